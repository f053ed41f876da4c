"""The fleet dashboard: static HTML and plain ES modules served by the controller (no CDN, no
build step), thumbnails, and the live event stream."""
