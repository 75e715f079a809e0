"""Pure functions over parsed mail: the message record, rejection classification, extraction."""
