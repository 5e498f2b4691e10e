"""The only code that talks to Firestore: the store, the value codec, the local emulator."""
