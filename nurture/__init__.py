"""nurture: marketing automation and lead nurturing.

The domain packages (leads, segments, ...) are plain Python over a SQLAlchemy ``Session`` and an
injected ``Clock``; ``nurture.web`` and ``nurture.cli`` are thin layers over them.
"""

__version__ = "0.1.0"
