"""The schema's revisions, oldest first by their `down_revision`."""
