"""Datasets on object storage: where they live (`target`), how their objects are laid
out (`keys`), and how they are read from anywhere (`reader`)."""
