"""The DMP: patients, records, consent, documents (PDSm / IHE MHD)."""
