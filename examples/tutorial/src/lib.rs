//! `cart`: an e-commerce shopping cart, one virtual actor per cart. This is
//! the crate `docs/WRITING_BEHAVIOURS.md` walks through, kept small so it can
//! be read in one sitting and copied as the start of your own kind.
//!
//! - [`Cart`] is the [`Behaviour`]; [`CartEvent`] is what clients send,
//!   [`CartState`] what each cart keeps, [`CartAlert`] what it emits.
//! - `src/main.rs` is a node binary hosting this kind and nothing else.
//! - The unit tests below drive one cart through
//!   [`eddy_core::testing::KeyHarness`]; `tests/node.rs` starts the binary and
//!   talks to it over HTTP.
//!
//! The rules of a cart:
//!
//! - `add` puts `qty` units of a SKU in the cart at `price_cents` each; the
//!   latest price of a SKU wins.
//! - `remove` takes up to `qty` units out. Removing more than the cart holds
//!   is **clamped**: the line goes, nothing goes negative, and
//!   [`CartState::clamped_removals`] counts it. A handler cannot refuse an
//!   event (only the schema check at the door can), so it decides what the
//!   event means and records that it did.
//! - `checkout` empties the cart; the same key then starts a new cart.
//! - [`CartAlert::BigCart`] is emitted once per cart, when the total first
//!   reaches [`BIG_CART_CENTS`].
//! - [`CartAlert::Abandoned`] comes from a timer: every event on a cart with
//!   items re-arms it [`ABANDON_AFTER_MS`] ahead, an empty cart cancels it, so
//!   it fires only for a cart that holds items and has gone silent.
//!
//! A cart holds at most [`MAX_LINES`] SKUs of at most [`MAX_SKU_BYTES`] bytes
//! and [`MAX_QTY`] units each, so a misbehaving client cannot grow its state.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use eddy_core::{Behaviour, Ctx};
use serde::{Deserialize, Serialize};

/// Silence (ms) after which a cart with items is reported abandoned. A shop
/// would use half an hour or more; one minute lets you watch it happen.
pub const ABANDON_AFTER_MS: u64 = 60_000;
/// Timer tag of the abandonment timer; the only timer a cart uses.
pub const ABANDON_TAG: u64 = 1;
/// Total (cents) at which a cart is reported big.
pub const BIG_CART_CENTS: u64 = 50_000;
/// Distinct SKUs per cart; adds of further SKUs are refused and counted.
pub const MAX_LINES: usize = 50;
/// Longest SKU (bytes); adds with a longer SKU are refused and counted.
pub const MAX_SKU_BYTES: usize = 64;
/// Units of one SKU per cart; larger quantities are capped.
pub const MAX_QTY: u32 = 1_000;

/// The shopping-cart behaviour; kind `cart`.
pub struct Cart;

/// What a client sends to a cart, e.g.
/// `{"add": {"sku": "mug", "qty": 2, "price_cents": 1250}}`,
/// `{"remove": {"sku": "mug", "qty": 1}}` or `"checkout"`.
///
/// Externally tagged (serde's default) on purpose: events travel as postcard,
/// which cannot decode `#[serde(tag = "…")]` enums.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CartEvent {
    /// Put `qty` units of `sku` in the cart.
    Add {
        /// Stock-keeping unit, the product's id.
        sku: String,
        /// Units added.
        qty: u32,
        /// Price of one unit in cents; replaces the SKU's earlier price.
        price_cents: u64,
    },
    /// Take up to `qty` units of `sku` out of the cart.
    Remove {
        /// Stock-keeping unit.
        sku: String,
        /// Units removed; more than the cart holds is clamped.
        qty: u32,
    },
    /// The cart was paid for: empty it and start a new one.
    Checkout,
}

/// One SKU in a cart.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Line {
    /// Stock-keeping unit.
    pub sku: String,
    /// Units in the cart, 1 ..= [`MAX_QTY`].
    pub qty: u32,
    /// Price of one unit in cents.
    pub price_cents: u64,
}

/// Per-cart state, as `GET /v1/actors/cart/{key}` shows it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CartState {
    /// Events applied.
    pub events: u64,
    /// The cart's lines in the order first added. A `Vec`, not a `HashMap`:
    /// its order is the same on every replica.
    pub lines: Vec<Line>,
    /// Sum of `qty * price_cents` over the lines.
    pub total_cents: u64,
    /// Whether this cart has emitted [`CartAlert::BigCart`].
    pub big_cart_alerted: bool,
    /// Time (ms) of the last event.
    pub last_event_ms: u64,
    /// Removals that asked for more units than the cart held.
    pub clamped_removals: u64,
    /// Adds refused for a SKU too long or beyond [`MAX_LINES`].
    pub refused_adds: u64,
    /// Checkouts so far.
    pub checkouts: u64,
    /// Times the abandonment timer fired.
    pub abandonments: u64,
}

impl CartState {
    /// Units in the cart, over all lines.
    pub fn items(&self) -> u64 {
        self.lines.iter().map(|line| u64::from(line.qty)).sum()
    }
}

/// What a cart reports, as JSON `{"type": "big_cart", "total_cents": …}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CartAlert {
    /// The total reached [`BIG_CART_CENTS`] (once per cart).
    BigCart {
        /// The total after the event.
        total_cents: u64,
        /// The threshold crossed.
        threshold_cents: u64,
    },
    /// A cart with items saw no event for [`ABANDON_AFTER_MS`].
    Abandoned {
        /// Units left in the cart.
        items: u64,
        /// Their total.
        total_cents: u64,
        /// Time (ms) of the cart's last event.
        last_event_ms: u64,
    },
}

impl Behaviour for Cart {
    const KIND: &'static str = "cart";
    type Event = CartEvent;
    type State = CartState;
    type Alert = CartAlert;

    fn on_event(state: &mut CartState, event: CartEvent, ctx: &mut Ctx<'_, Self>) {
        state.events += 1;
        state.last_event_ms = ctx.now().as_millis();
        match event {
            CartEvent::Add {
                sku,
                qty,
                price_cents,
            } => add(state, sku, qty, price_cents),
            CartEvent::Remove { sku, qty } => remove(state, &sku, qty),
            CartEvent::Checkout => {
                state.checkouts += 1;
                state.lines.clear();
                state.big_cart_alerted = false;
            }
        }
        state.total_cents = state.lines.iter().fold(0, |total: u64, line| {
            total.saturating_add(u64::from(line.qty).saturating_mul(line.price_cents))
        });

        if !state.big_cart_alerted && state.total_cents >= BIG_CART_CENTS {
            state.big_cart_alerted = true;
            ctx.emit(CartAlert::BigCart {
                total_cents: state.total_cents,
                threshold_cents: BIG_CART_CENTS,
            });
        }

        // Setting a pending tag moves it, so each event pushes the deadline on.
        if state.lines.is_empty() {
            ctx.cancel_timer(ABANDON_TAG);
        } else {
            ctx.set_timer(ctx.now().plus_ms(ABANDON_AFTER_MS), ABANDON_TAG);
        }
    }

    fn on_timer(state: &mut CartState, tag: u64, ctx: &mut Ctx<'_, Self>) {
        // An empty cart cancels the timer; checking again costs nothing and
        // keeps a timer set by an older version of this code harmless.
        if tag == ABANDON_TAG && !state.lines.is_empty() {
            state.abandonments += 1;
            ctx.emit(CartAlert::Abandoned {
                items: state.items(),
                total_cents: state.total_cents,
                last_event_ms: state.last_event_ms,
            });
        }
    }
}

fn add(state: &mut CartState, sku: String, qty: u32, price_cents: u64) {
    if qty == 0 {
        return;
    }
    if let Some(line) = state.lines.iter_mut().find(|line| line.sku == sku) {
        line.qty = line.qty.saturating_add(qty).min(MAX_QTY);
        line.price_cents = price_cents;
    } else if sku.len() <= MAX_SKU_BYTES && state.lines.len() < MAX_LINES {
        state.lines.push(Line {
            sku,
            qty: qty.min(MAX_QTY),
            price_cents,
        });
    } else {
        state.refused_adds += 1;
    }
}

fn remove(state: &mut CartState, sku: &str, qty: u32) {
    let Some(index) = state.lines.iter().position(|line| line.sku == sku) else {
        state.clamped_removals += 1;
        return;
    };
    let line = &mut state.lines[index];
    if qty > line.qty {
        state.clamped_removals += 1;
    }
    line.qty = line.qty.saturating_sub(qty);
    if line.qty == 0 {
        state.lines.remove(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_core::Timestamp;
    use eddy_core::testing::KeyHarness;

    fn add(sku: &str, qty: u32, price_cents: u64) -> CartEvent {
        CartEvent::Add {
            sku: sku.into(),
            qty,
            price_cents,
        }
    }

    fn remove(sku: &str, qty: u32) -> CartEvent {
        CartEvent::Remove {
            sku: sku.into(),
            qty,
        }
    }

    #[test]
    fn json_shapes_parse() {
        let parse = |json: &str| serde_json::from_str::<CartEvent>(json);
        assert_eq!(
            parse(r#"{"add": {"sku": "mug", "qty": 2, "price_cents": 1250}}"#).expect("add"),
            add("mug", 2, 1250)
        );
        assert_eq!(
            parse(r#"{"remove": {"sku": "mug", "qty": 1}}"#).expect("remove"),
            remove("mug", 1)
        );
        assert_eq!(
            parse(r#""checkout""#).expect("checkout"),
            CartEvent::Checkout
        );
        assert!(
            parse(r#"{"add": {"sku": "mug", "qty": 2}}"#).is_err(),
            "no price"
        );
        assert!(parse(r#"{"remove": {"sku": "mug", "qty": -1}}"#).is_err());
        assert!(parse(r#""empty""#).is_err(), "unknown event");
    }

    #[test]
    fn big_cart_alerts_once_at_the_threshold() {
        let mut cart = KeyHarness::<Cart>::new("cart-1");
        assert!(cart.event(Timestamp(1), add("tv", 1, 49_999)).is_empty());
        assert_eq!(
            cart.event(Timestamp(2), add("cable", 1, 1)),
            vec![CartAlert::BigCart {
                total_cents: BIG_CART_CENTS,
                threshold_cents: BIG_CART_CENTS
            }],
            "exactly at the threshold counts"
        );
        assert!(cart.event(Timestamp(3), add("tv", 1, 49_999)).is_empty());
        assert!(cart.event(Timestamp(4), remove("tv", 2)).is_empty());
        assert!(
            cart.event(Timestamp(5), add("tv", 1, 49_999)).is_empty(),
            "crossing again in the same cart is not news"
        );
        assert!(cart.event(Timestamp(6), CartEvent::Checkout).is_empty());
        assert_eq!(cart.state().total_cents, 0);
        assert_eq!(
            cart.event(Timestamp(7), add("sofa", 1, 80_000)).len(),
            1,
            "a new cart after checkout alerts again"
        );
    }

    #[test]
    fn abandoned_fires_only_if_silent() {
        let mut cart = KeyHarness::<Cart>::new("cart-1");
        cart.event(Timestamp(0), add("mug", 2, 1250));
        assert!(cart.advance(Timestamp(ABANDON_AFTER_MS - 1)).is_empty());
        cart.event(Timestamp(30_000), add("lamp", 1, 4999));
        assert!(
            cart.advance(Timestamp(ABANDON_AFTER_MS)).is_empty(),
            "the second event moved the deadline"
        );
        assert_eq!(
            cart.advance(Timestamp(30_000 + ABANDON_AFTER_MS)),
            vec![CartAlert::Abandoned {
                items: 3,
                total_cents: 2 * 1250 + 4999,
                last_event_ms: 30_000
            }]
        );
        assert!(
            cart.advance(Timestamp(100 * ABANDON_AFTER_MS)).is_empty(),
            "fires once"
        );
        assert_eq!(cart.state().abandonments, 1);
        assert_eq!(cart.state().events, 2, "timer firings are not events");
        assert_eq!(cart.state().items(), 3, "an abandoned cart keeps its items");
    }

    #[test]
    fn an_empty_cart_is_never_abandoned() {
        let mut cart = KeyHarness::<Cart>::new("cart-1");
        cart.event(Timestamp(0), add("mug", 1, 1250));
        assert_eq!(
            cart.timers(),
            vec![(ABANDON_TAG, Timestamp(ABANDON_AFTER_MS))]
        );
        cart.event(Timestamp(10), remove("mug", 1));
        assert!(cart.timers().is_empty(), "emptied: timer cancelled");
        cart.event(Timestamp(20), add("mug", 1, 1250));
        cart.event(Timestamp(30), CartEvent::Checkout);
        assert!(cart.timers().is_empty(), "checked out: timer cancelled");
        assert!(cart.advance(Timestamp(10 * ABANDON_AFTER_MS)).is_empty());
        assert_eq!(cart.state().abandonments, 0);
    }

    #[test]
    fn removing_more_than_the_cart_holds_is_clamped() {
        let mut cart = KeyHarness::<Cart>::new("cart-1");
        cart.event(Timestamp(0), add("mug", 3, 1250));
        cart.event(Timestamp(1), add("lamp", 1, 4999));
        cart.event(Timestamp(2), remove("mug", 1));
        assert_eq!(cart.state().clamped_removals, 0, "an exact removal");
        assert_eq!(cart.state().total_cents, 2 * 1250 + 4999);
        cart.event(Timestamp(3), remove("mug", 5));
        assert_eq!(
            cart.state().lines,
            vec![Line {
                sku: "lamp".into(),
                qty: 1,
                price_cents: 4999
            }],
            "the mug line is gone, not negative"
        );
        assert_eq!(cart.state().total_cents, 4999);
        assert_eq!(cart.state().clamped_removals, 1);
        cart.event(Timestamp(4), remove("kettle", 1));
        assert_eq!(cart.state().clamped_removals, 2, "a SKU not in the cart");
        assert_eq!(cart.state().items(), 1);
        assert_eq!(cart.state().events, 5);
    }

    #[test]
    fn state_survives_postcard_encode_and_decode() {
        let mut cart = KeyHarness::<Cart>::new("cart-1");
        cart.event(Timestamp(5), add("mug", 2, 1250));
        cart.event(Timestamp(6), add("sofa", 1, 80_000));
        cart.event(Timestamp(7), remove("mug", 9));
        cart.advance(Timestamp(7 + ABANDON_AFTER_MS));
        let state = cart.state();
        assert!(state.big_cart_alerted && state.abandonments == 1);
        let bytes = postcard::to_stdvec(state).expect("encodes");
        assert_eq!(
            &postcard::from_bytes::<CartState>(&bytes).expect("decodes"),
            state
        );
        for event in [add("mug", 2, 1250), remove("mug", 1), CartEvent::Checkout] {
            let bytes = postcard::to_stdvec(&event).expect("encodes");
            assert_eq!(
                postcard::from_bytes::<CartEvent>(&bytes).expect("decodes"),
                event
            );
        }
    }

    #[test]
    fn a_cart_is_bounded() {
        let mut cart = KeyHarness::<Cart>::new("cart-1");
        for i in 0..MAX_LINES + 3 {
            cart.event(Timestamp(i as u64), add(&format!("sku-{i}"), 1, 100));
        }
        cart.event(Timestamp(100), add(&"x".repeat(MAX_SKU_BYTES + 1), 1, 100));
        assert_eq!(cart.state().lines.len(), MAX_LINES);
        assert_eq!(cart.state().refused_adds, 4);
        cart.event(Timestamp(101), add("sku-0", u32::MAX, 1));
        assert_eq!(cart.state().lines[0].qty, MAX_QTY);
        cart.event(Timestamp(102), add("sku-1", 0, 1));
        assert_eq!(
            cart.state().lines[1].qty,
            1,
            "adding nothing changes nothing"
        );
    }
}
