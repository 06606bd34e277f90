"""Users of the marketing UI and API, their roles and password checks."""
