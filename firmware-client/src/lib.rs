//! A `no_std` MQTT client (work in progress).
#![no_std]
