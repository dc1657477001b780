"""What a browser opens: sanitised notebooks, inert HTML feedback, the formgrader guard."""
