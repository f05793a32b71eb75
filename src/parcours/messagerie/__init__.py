"""The MSSanté operator: hosted mailboxes, SMTP submission and IMAP access over TLS, the
mutual-TLS relay between operators of the liste blanche, the durable queue, and the message
rules of the trust space (X-MSS headers, IHE XDM, DSN and MDN).

Reference: ``shared/reference/mssante.md``; design note: ``docs/messagerie.md``.
"""
