"""Who the users are: accounts, passwords, tokens, sessions."""
