"""The dashboard and API docs pages: static HTML, CSS and ES modules, no build step."""
