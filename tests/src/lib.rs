//! Integration and interop tests live in `tests/tests/`; shared helpers in `tests/src/`.
