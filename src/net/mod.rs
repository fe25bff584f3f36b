//! Networking building blocks for private networks: nspawn's interface names
//! and MAC addresses (`names`), a synchronous rtnetlink client (`rtnl`) and
//! the nftables port forwarding (`nft`), and udev's view of host links (`udev`).
//! `rtnl` and `nft` share one netlink framing (`netlink`).

pub mod names;
mod netlink;
pub mod nft;
pub mod rtnl;
pub mod udev;

/// An Ethernet (MAC) address.
pub type Mac = [u8; 6];
