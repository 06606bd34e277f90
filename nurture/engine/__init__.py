"""The campaign engine: walks every enrolled lead through its campaign's steps, on time, in its own time
zone, sending each email exactly once. See docs/engine.md."""
