"""The dev stack itself: the servers from pip wheels and the sandbox Kubernetes API."""
