"""Lead scoring: rules, decaying engagement points, caps, the per-lead breakdown and lifecycle automation."""
