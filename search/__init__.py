"""Architecture search (TinyNAS): see the issue tracker; not implemented yet."""
