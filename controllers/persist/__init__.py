"""What the controller keeps: state files, the last plan, the ledger."""
