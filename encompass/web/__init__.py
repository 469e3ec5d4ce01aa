"""The pages people use in a browser: templates, static files and how they are served."""
