"""Pages for machines and everyone: health checks and uploaded media."""
from . import health, media

BLUEPRINTS = (health.bp, media.bp)
