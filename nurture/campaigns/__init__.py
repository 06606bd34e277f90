"""Campaigns: multi-step drip sequences defined in YAML (docs/campaigns.md), validated with every error
located, stored as normalised JSON and walked step by step by the engine."""
