"""The nextround service: configuration, IMAP adapter, state store, sync loop and CLI."""
