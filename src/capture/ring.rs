//! A `TPACKET_V3` receive ring: the kernel writes frames straight into memory shared with us,
//! in blocks it hands over when full or after [`RETIRE_MS`], so a busy capture costs one
//! wake-up per block instead of a copy and a system call per frame (what tcpdump does too).
//!
//! Layout (linux/if_packet.h): the ring is `BLOCKS` blocks of `BLOCK_SIZE` bytes. Each block
//! starts with a `tpacket_block_desc` whose `block_status` says who owns it (kernel or user)
//! and how many frames it holds; each frame starts with a `tpacket3_hdr` (timestamp in ns,
//! captured and original length, offset of the link-layer header), followed by the
//! `sockaddr_ll` that carries the packet type. We hand a block back (status := kernel) only
//! when the caller asks for a frame after its last one, so a borrowed frame stays valid.
//!
//! A block holds whole frames: with 1 MiB blocks a 64 KiB `lo` frame is never cut.

use std::io;
use std::ptr;
use std::sync::atomic::{fence, Ordering};

/// Bytes per block: a power of two and a multiple of the page size, larger than any frame.
pub const BLOCK_SIZE: usize = 1 << 20;
/// Blocks in the ring (64 MiB: bursts wait here instead of being dropped).
pub const BLOCKS: usize = 64;
/// The kernel hands over a block that has not filled after this many milliseconds.
pub const RETIRE_MS: u32 = 20;

const PACKET_RX_RING: i32 = 5;
const PACKET_VERSION: i32 = 10;
const TPACKET_V3: i32 = 2;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
/// `tpacket_block_desc`: `block_status` at 8, `num_pkts` at 12, `offset_to_first_pkt` at 16.
const BLOCK_STATUS: usize = 8;
const BLOCK_NUM_PKTS: usize = 12;
const BLOCK_FIRST: usize = 16;
/// `TPACKET_ALIGN(sizeof(struct tpacket3_hdr))`: where the `sockaddr_ll` follows the header.
const HDR_LEN: usize = 48;
/// `sll_pkttype` within `sockaddr_ll`.
const SLL_PKTTYPE: usize = 10;
const PACKET_OUTGOING: u8 = 4;

/// `struct tpacket_req3`.
#[repr(C)]
struct Req3 {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
    retire_blk_tov: u32,
    sizeof_priv: u32,
    feature_req_word: u32,
}

/// One frame in the ring, as the caller needs it.
pub struct RingFrame<'a> {
    pub data: &'a [u8],
    pub orig_len: u32,
    pub sec: u32,
    pub nsec: u32,
}

/// The mapped ring and where the reader is in it.
pub struct Ring {
    map: *mut u8,
    len: usize,
    /// The block being read, while we own it.
    block: usize,
    held: bool,
    /// Frames left in the held block, and the offset of the next one.
    left: u32,
    offset: usize,
    /// Offset in the mapping of the frame [`Ring::current`] returns.
    current: usize,
}

// SAFETY: the mapping belongs to this value alone (nothing else holds the pointer), so moving
// it to another thread moves sole access with it.
unsafe impl Send for Ring {}

impl Ring {
    /// Switch `fd` to `TPACKET_V3` and map its receive ring. Call before `bind`.
    pub fn new(fd: i32) -> io::Result<Ring> {
        let setopt = |name: i32, val: *const libc::c_void, len: usize| {
            // SAFETY: `val` points to `len` readable bytes.
            let r = unsafe { libc::setsockopt(fd, libc::SOL_PACKET, name, val, len as u32) };
            if r == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        };
        let v = TPACKET_V3;
        setopt(PACKET_VERSION, &v as *const i32 as *const _, 4)?;
        let req = Req3 {
            block_size: BLOCK_SIZE as u32,
            block_nr: BLOCKS as u32,
            // Frame size is only checked for sanity by V3; frames are packed in blocks.
            frame_size: 2048,
            frame_nr: (BLOCK_SIZE * BLOCKS / 2048) as u32,
            retire_blk_tov: RETIRE_MS,
            sizeof_priv: 0,
            feature_req_word: 0,
        };
        setopt(
            PACKET_RX_RING,
            &req as *const Req3 as *const _,
            std::mem::size_of::<Req3>(),
        )?;
        let len = BLOCK_SIZE * BLOCKS;
        // SAFETY: mapping the ring the kernel just allocated for this socket.
        let map = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Ring {
            map: map as *mut u8,
            len,
            block: 0,
            held: false,
            left: 0,
            offset: 0,
            current: 0,
        })
    }

    fn u32_at(&self, at: usize) -> u32 {
        // SAFETY: `at` lies inside the mapping (block headers and frame headers the kernel
        // wrote); volatile because the kernel writes the memory concurrently.
        unsafe { ptr::read_volatile(self.map.add(at) as *const u32) }
    }

    /// Move to the next frame, skipping `PACKET_OUTGOING` ones when asked; `false` when the
    /// kernel has not handed over another block yet. Blocks are given back here, so a frame
    /// from [`Ring::current`] stays valid until the next call.
    pub fn advance(&mut self, skip_outgoing: bool) -> bool {
        loop {
            let base = self.block * BLOCK_SIZE;
            if self.held && self.left == 0 {
                // Done with this block: give it back, after all our reads of it.
                fence(Ordering::Release);
                // SAFETY: the status word of a block we own.
                unsafe {
                    ptr::write_volatile(
                        self.map.add(base + BLOCK_STATUS) as *mut u32,
                        TP_STATUS_KERNEL,
                    )
                };
                self.held = false;
                self.block = (self.block + 1) % BLOCKS;
                continue;
            }
            if !self.held {
                if self.u32_at(base + BLOCK_STATUS) & TP_STATUS_USER == 0 {
                    return false;
                }
                // The kernel's writes to the block happen before its status change.
                fence(Ordering::Acquire);
                self.held = true;
                self.left = self.u32_at(base + BLOCK_NUM_PKTS);
                self.offset = self.u32_at(base + BLOCK_FIRST) as usize;
                continue;
            }
            let hdr = base + self.offset;
            self.left -= 1;
            self.offset += self.u32_at(hdr) as usize;
            // SAFETY: sll_pkttype lies inside this frame's slot in the block we hold.
            let pkttype = unsafe { ptr::read_volatile(self.map.add(hdr + HDR_LEN + SLL_PKTTYPE)) };
            if skip_outgoing && pkttype == PACKET_OUTGOING {
                continue;
            }
            self.current = hdr;
            return true;
        }
    }

    /// The frame [`Ring::advance`] moved to.
    pub fn current(&self) -> RingFrame<'_> {
        let hdr = self.current;
        let block_end = (hdr / BLOCK_SIZE + 1) * BLOCK_SIZE;
        let snaplen = self.u32_at(hdr + 12) as usize;
        // SAFETY: tp_mac is inside the frame header of a block we hold.
        let mac = unsafe { ptr::read_volatile(self.map.add(hdr + 24) as *const u16) } as usize;
        let start = (hdr + mac).min(block_end);
        let end = (start + snaplen).min(block_end);
        RingFrame {
            // SAFETY: [start, end) lies inside the block we hold; the kernel does not write it
            // until `advance` hands the block back, which needs `&mut self`.
            data: unsafe { std::slice::from_raw_parts(self.map.add(start), end - start) },
            orig_len: self.u32_at(hdr + 16),
            sec: self.u32_at(hdr + 4),
            nsec: self.u32_at(hdr + 8),
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping once.
        unsafe { libc::munmap(self.map as *mut libc::c_void, self.len) };
    }
}
