"""fsmigrate: versioned, forward-only, audited migrations for Google Cloud Firestore."""

__version__ = "0.1.0"
