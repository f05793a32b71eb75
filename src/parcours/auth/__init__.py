"""Who is calling: bearer tokens checked against trusted OpenID Connect issuers."""
