//! An MQTT broker for edge devices (work in progress).
