"""The web layer: Flask app factory, extensions and blueprints over the domain."""
