//! MQTT 3.1.1 and 5.0 over WebSocket on `/clients/mqtt/hubs/{hub}`, packet by packet: the
//! handshake and its refusals, topics as groups across protocols, QoS, keep-alive and the last
//! will. The client writes and reads packets with the same codec crate the hub uses.

mod client;
mod packets;
