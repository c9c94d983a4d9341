"""What the controller shows: status documents, views, events, metrics."""
