//! The simulated peer network: one connection per direction between two
//! nodes, each a FIFO (TCP's order), delivered in a seeded random order
//! across connections; cuts drop what they meet, a reset starts a new
//! connection while the old one may still drain, a crash drops every
//! connection of the node.

use std::collections::VecDeque;

use eddy_core::{Epoch, Replicated, Seq};

/// What an owner asked, carried back with the answer.
#[derive(Debug, Clone, Copy)]
pub struct Ask {
    /// The client write this is for, if any (else a barrier or a check).
    pub write: Option<u64>,
    /// The position the backup must hold to confirm.
    pub required: Seq,
    /// The owner's epoch when it sent this.
    pub epoch: Epoch,
}

/// A message on the peer port.
#[derive(Debug, Clone)]
pub enum Body {
    /// Entries (empty: a barrier).
    Replicate {
        /// The sender's epoch.
        epoch: Epoch,
        /// Entries back to back.
        entries: Vec<u8>,
        /// What the answer is for.
        ask: Ask,
    },
    /// One chunk of a snapshot stream.
    Chunk {
        /// The sender's epoch.
        epoch: Epoch,
        /// The chunk.
        chunk: Vec<u8>,
        /// Whether it is the stream's last.
        last: bool,
        /// What the answer is for (the last chunk's answer counts).
        ask: Ask,
    },
    /// A backup's answer.
    Answer {
        /// The outcome.
        answer: Replicated,
        /// What it answers.
        ask: Ask,
    },
}

/// A message in flight.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Sender (node index).
    pub from: usize,
    /// Receiver (node index).
    pub to: usize,
    /// The connection (requests and their answers share it).
    pub link: u64,
    /// The message.
    pub body: Body,
}

/// One direction of one connection.
struct Queue {
    from: usize,
    to: usize,
    link: u64,
    frames: VecDeque<Frame>,
}

/// Every connection, and the cuts.
pub struct Net {
    nodes: usize,
    /// The current connection of each ordered pair, `from * nodes + to`.
    current: Vec<u64>,
    queues: Vec<Queue>,
    next_link: u64,
    /// Cut directed links, `from * nodes + to`.
    cut: Vec<bool>,
}

impl Net {
    /// A network of `nodes` nodes, every link up.
    pub fn new(nodes: usize) -> Net {
        let mut net = Net {
            nodes,
            current: vec![0; nodes * nodes],
            queues: Vec::new(),
            next_link: 1,
            cut: vec![false; nodes * nodes],
        };
        for from in 0..nodes {
            for to in 0..nodes {
                net.reset(from, to);
            }
        }
        net
    }

    /// The connection a request from `from` to `to` goes on now.
    pub fn link(&self, from: usize, to: usize) -> u64 {
        self.current[from * self.nodes + to]
    }

    /// Queues a request on the current connection.
    pub fn send(&mut self, from: usize, to: usize, body: Body) {
        let link = self.link(from, to);
        self.push(Frame {
            from,
            to,
            link,
            body,
        });
    }

    /// Queues an answer to `request` on the connection it came on.
    pub fn answer(&mut self, request: &Frame, answer: Replicated, ask: Ask) {
        self.push(Frame {
            from: request.to,
            to: request.from,
            link: request.link,
            body: Body::Answer { answer, ask },
        });
    }

    fn push(&mut self, frame: Frame) {
        if self.is_cut(frame.from, frame.to) {
            return;
        }
        let queue = self
            .queues
            .iter_mut()
            .find(|q| q.link == frame.link && q.from == frame.from && q.to == frame.to);
        // No queue: the connection is gone (its node crashed), and so is
        // the frame.
        if let Some(queue) = queue {
            queue.frames.push_back(frame);
        }
    }

    /// A new connection from `from` to `to`; the old one keeps draining.
    pub fn reset(&mut self, from: usize, to: usize) {
        let link = self.next_link;
        self.next_link += 1;
        self.current[from * self.nodes + to] = link;
        for (a, b) in [(from, to), (to, from)] {
            self.queues.push(Queue {
                from: a,
                to: b,
                link,
                frames: VecDeque::new(),
            });
        }
        // An old connection lives while either direction has frames: the
        // requests still on it are answered on it.
        let draining: Vec<u64> = self
            .queues
            .iter()
            .filter(|q| !q.frames.is_empty())
            .map(|q| q.link)
            .collect();
        let current = &self.current;
        self.queues
            .retain(|q| draining.contains(&q.link) || current.contains(&q.link));
    }

    /// Every connection of `node` is gone, with what was in flight.
    pub fn drop_node(&mut self, node: usize) {
        self.queues.retain(|q| q.from != node && q.to != node);
        for other in 0..self.nodes {
            self.reset(node, other);
            self.reset(other, node);
        }
    }

    /// Cuts or restores the link from `from` to `to`; a cut drops what is
    /// in flight on it.
    pub fn set_cut(&mut self, from: usize, to: usize, cut: bool) {
        self.cut[from * self.nodes + to] = cut;
        if cut {
            for queue in self
                .queues
                .iter_mut()
                .filter(|q| q.from == from && q.to == to)
            {
                queue.frames.clear();
            }
        }
    }

    /// Whether the link from `from` to `to` is cut.
    pub fn is_cut(&self, from: usize, to: usize) -> bool {
        self.cut[from * self.nodes + to]
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.cut.iter_mut().for_each(|c| *c = false);
    }

    /// Frames in flight.
    pub fn in_flight(&self) -> usize {
        self.queues.iter().map(|q| q.frames.len()).sum()
    }

    /// The next frame of the `pick`-th non-empty connection (modulo their
    /// number), if any is in flight.
    pub fn deliver(&mut self, pick: usize) -> Option<Frame> {
        let busy: Vec<usize> = (0..self.queues.len())
            .filter(|i| !self.queues[*i].frames.is_empty())
            .collect();
        let index = *busy.get(pick % busy.len().max(1))?;
        self.queues[index].frames.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn barrier(n: u64) -> Body {
        Body::Replicate {
            epoch: Epoch(1),
            entries: Vec::new(),
            ask: Ask {
                write: Some(n),
                required: Seq(0),
                epoch: Epoch(1),
            },
        }
    }

    fn write_of(frame: &Frame) -> Option<u64> {
        match &frame.body {
            Body::Replicate { ask, .. } | Body::Chunk { ask, .. } | Body::Answer { ask, .. } => {
                ask.write
            }
        }
    }

    #[test]
    fn one_connection_delivers_in_order_and_a_reset_one_may_still_drain() {
        let mut net = Net::new(2);
        net.send(0, 1, barrier(1));
        net.send(0, 1, barrier(2));
        let old = net.link(0, 1);
        net.reset(0, 1);
        assert_ne!(net.link(0, 1), old);
        net.send(0, 1, barrier(3));
        let mut seen = Vec::new();
        for pick in [7, 3, 1, 0, 5] {
            if let Some(frame) = net.deliver(pick) {
                seen.push((frame.link == old, write_of(&frame)));
            }
        }
        assert_eq!(seen.len(), 3);
        let old_ones: Vec<_> = seen.iter().filter(|(o, _)| *o).map(|(_, w)| *w).collect();
        assert_eq!(old_ones, [Some(1), Some(2)], "FIFO within a connection");
    }

    #[test]
    fn a_request_drained_from_a_reset_connection_is_answered_on_it() {
        let mut net = Net::new(2);
        net.send(0, 1, barrier(1));
        let old = net.link(0, 1);
        net.reset(0, 1);
        net.reset(1, 0);
        let request = net.deliver(0).expect("the old connection drains");
        assert_eq!(request.link, old);
        let ask = Ask {
            write: Some(1),
            required: Seq(0),
            epoch: Epoch(1),
        };
        net.answer(&request, Replicated::Applied { through: Seq(0) }, ask);
        let answer = net.deliver(0).expect("answered on the old connection");
        assert_eq!((answer.link, answer.to), (old, 0));
    }

    #[test]
    fn a_cut_drops_what_it_meets_and_a_crash_every_connection() {
        let mut net = Net::new(3);
        net.send(0, 1, barrier(1));
        net.set_cut(0, 1, true);
        assert_eq!(net.in_flight(), 0, "in flight on the cut link");
        net.send(0, 1, barrier(2));
        assert_eq!(net.in_flight(), 0, "sent into the cut");
        net.send(1, 0, barrier(3));
        assert_eq!(net.in_flight(), 1, "the other direction still works");
        net.heal();
        net.send(0, 2, barrier(4));
        net.drop_node(0);
        assert_eq!(net.in_flight(), 0);
    }
}
