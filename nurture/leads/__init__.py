"""Leads: the people being nurtured, their lifecycle stage, tags, attributes and timeline."""
