"""Real servers and shared fixtures for the delivery tests: an SMTP server (aiosmtpd) and an HTTP
server that behaves like SendGrid's v3 Mail Send endpoint."""
