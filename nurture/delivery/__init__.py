"""Email delivery: the outbox of messages, the suppression guard, the shared send-rate limit and the
backends (a file outbox, any SMTP server, SendGrid's v3 API) that hand rendered emails to the world.

Modules are imported directly (``nurture.delivery.outbox``, ``nurture.delivery.dispatch``, ...);
this package imports nothing so that ``nurture.config`` can load ``nurture.delivery.settings`` cheaply."""
