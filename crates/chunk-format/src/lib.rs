//! Sans-IO codecs for chunkvault.
