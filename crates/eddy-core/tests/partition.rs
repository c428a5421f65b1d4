//! Partition behaviour: virtual actors, timers, producers, fencing, panics.

// Test and bench code: a failed expectation should panic loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use eddy_core::{
    ApplyError, Entry, Epoch, Input, Outputs, PartitionConfig, ProducerRef, Seq, Submitted,
    Timestamp,
};

#[test]
fn first_event_activates_key_with_default_state() {
    let mut p = partition(PartitionConfig::default());
    assert_eq!(counter_state(&p, "a"), None);
    submit(&mut p, 10, cmd("a", Cmd::Add(3)));
    let state = counter_state(&p, "a").expect("key exists");
    assert_eq!((state.events, state.sum), (1, 3));
    assert_eq!(p.stats().keys_active, 1);
}

#[test]
fn idle_keys_passivate_and_reactivate_transparently() {
    let config = PartitionConfig {
        idle_timeout_ms: 100,
        ..PartitionConfig::default()
    };
    let mut p = partition(config);
    submit(&mut p, 0, cmd("a", Cmd::Add(4)));
    submit(&mut p, 50, cmd("b", Cmd::Add(1)));
    let mut out = Outputs::default();
    p.tick(Timestamp(120), &mut out);
    let stats = p.stats();
    assert_eq!(
        (stats.keys_active, stats.keys_passive),
        (1, 1),
        "a idle, b not"
    );
    // Reading a passive key does not activate it.
    assert_eq!(counter_state(&p, "a").map(|s| s.sum), Some(4));
    assert_eq!(p.stats().keys_passive, 1);
    submit(&mut p, 130, cmd("a", Cmd::Add(6)));
    let state = counter_state(&p, "a").expect("exists");
    assert_eq!((state.events, state.sum), (2, 10));
    assert_eq!(p.stats().keys_active, 2);
}

#[test]
fn touched_key_is_not_passivated() {
    let config = PartitionConfig {
        idle_timeout_ms: 100,
        ..PartitionConfig::default()
    };
    let mut p = partition(config);
    submit(&mut p, 0, cmd("a", Cmd::Add(1)));
    submit(&mut p, 90, cmd("a", Cmd::Add(1)));
    p.tick(Timestamp(150), &mut Outputs::default());
    assert_eq!(p.stats().keys_active, 1, "a was touched at 90");
    p.tick(Timestamp(190), &mut Outputs::default());
    assert_eq!(p.stats().keys_passive, 1, "idle since 90");
}

#[test]
fn active_key_limit_passivates_oldest_first() {
    let config = PartitionConfig {
        max_active_keys: 6, // 3 per kind
        ..PartitionConfig::default()
    };
    let mut p = partition(config);
    for (i, key) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        submit(&mut p, i as u64, cmd(key, Cmd::Add(1)));
    }
    p.tick(Timestamp(10), &mut Outputs::default());
    let stats = p.stats();
    assert_eq!((stats.keys_active, stats.keys_passive), (3, 2));
    p.dump().expect("encodes").keys.values().for_each(|bytes| {
        assert!(!bytes.is_empty());
    });
}

#[test]
fn stop_drops_state_and_timers() {
    let mut p = partition(PartitionConfig::default());
    submit(&mut p, 0, cmd("a", Cmd::Add(5)));
    submit(
        &mut p,
        1,
        cmd(
            "a",
            Cmd::SetTimer {
                delay_ms: 10,
                tag: 1,
            },
        ),
    );
    assert_eq!(p.stats().timers_pending, 1);
    submit(&mut p, 2, cmd("a", Cmd::Stop));
    assert_eq!(counter_state(&p, "a"), None);
    assert_eq!(p.stats().timers_pending, 0);
    let mut out = Outputs::default();
    assert_eq!(p.tick(Timestamp(100), &mut out), 0);
    submit(&mut p, 200, cmd("a", Cmd::Add(1)));
    assert_eq!(counter_state(&p, "a").map(|s| s.events), Some(1));
}

#[test]
fn timers_fire_in_time_order_exactly_once_as_log_entries() {
    let mut p = partition(PartitionConfig::default());
    submit(
        &mut p,
        0,
        cmd(
            "a",
            Cmd::SetTimer {
                delay_ms: 30,
                tag: 1,
            },
        ),
    );
    submit(
        &mut p,
        0,
        cmd(
            "b",
            Cmd::SetTimer {
                delay_ms: 10,
                tag: 2,
            },
        ),
    );
    submit(
        &mut p,
        0,
        cmd(
            "a",
            Cmd::SetTimer {
                delay_ms: 20,
                tag: 4,
            },
        ),
    );
    let mut out = Outputs::default();
    assert_eq!(p.tick(Timestamp(5), &mut out), 0, "nothing due yet");
    assert_eq!(p.tick(Timestamp(100), &mut out), 3);
    let fired: Vec<(String, u64)> = logged(&out)
        .iter()
        .map(|e| match &e.input {
            Input::Timer { key, tag, .. } => (key.clone(), *tag),
            Input::Event(_) => panic!("only timers expected"),
        })
        .collect();
    assert_eq!(
        fired,
        vec![("b".into(), 2), ("a".into(), 4), ("a".into(), 1)],
        "due-time order"
    );
    assert_eq!(out.alerts.len(), 3);
    assert!(logged(&out).windows(2).all(|w| w[1].seq == w[0].seq.next()));
    assert_eq!(p.tick(Timestamp(200), &mut Outputs::default()), 0, "once");
    // Timer handler state saw the logged time.
    let a = counter_state(&p, "a").expect("exists");
    assert_eq!(a.fired, vec![(4, 100), (1, 100)]);
}

#[test]
fn setting_a_pending_tag_moves_it_and_cancel_removes_it() {
    let mut p = partition(PartitionConfig::default());
    submit(
        &mut p,
        0,
        cmd(
            "a",
            Cmd::SetTimer {
                delay_ms: 10,
                tag: 1,
            },
        ),
    );
    submit(
        &mut p,
        0,
        cmd(
            "a",
            Cmd::SetTimer {
                delay_ms: 50,
                tag: 1,
            },
        ),
    );
    submit(
        &mut p,
        0,
        cmd(
            "a",
            Cmd::SetTimer {
                delay_ms: 20,
                tag: 2,
            },
        ),
    );
    submit(&mut p, 0, cmd("a", Cmd::CancelTimer(2)));
    assert_eq!(p.stats().timers_pending, 1);
    assert_eq!(
        p.tick(Timestamp(30), &mut Outputs::default()),
        0,
        "moved to 50"
    );
    assert_eq!(p.tick(Timestamp(50), &mut Outputs::default()), 1);
}

#[test]
fn due_timer_reactivates_passive_key() {
    let config = PartitionConfig {
        idle_timeout_ms: 10,
        ..PartitionConfig::default()
    };
    let mut p = partition(config);
    submit(
        &mut p,
        0,
        cmd(
            "a",
            Cmd::SetTimer {
                delay_ms: 100,
                tag: 1,
            },
        ),
    );
    p.tick(Timestamp(50), &mut Outputs::default());
    assert_eq!(p.stats().keys_passive, 1);
    let mut out = Outputs::default();
    assert_eq!(p.tick(Timestamp(100), &mut out), 1);
    assert_eq!(
        counter_state(&p, "a").map(|s| s.fired),
        Some(vec![(1, 100)])
    );
}

#[test]
fn overdue_timers_catch_up_at_bounded_rate() {
    let config = PartitionConfig {
        max_timer_fires_per_tick: 4,
        ..PartitionConfig::default()
    };
    let mut p = partition(config);
    for i in 0..10u64 {
        let key = format!("k{i}");
        submit(
            &mut p,
            0,
            cmd(
                &key,
                Cmd::SetTimer {
                    delay_ms: 1,
                    tag: 1,
                },
            ),
        );
    }
    assert_eq!(p.tick(Timestamp(1_000), &mut Outputs::default()), 4);
    assert_eq!(p.tick(Timestamp(1_001), &mut Outputs::default()), 4);
    assert_eq!(p.tick(Timestamp(1_002), &mut Outputs::default()), 2);
}

#[test]
fn timers_per_key_are_bounded() {
    let config = PartitionConfig {
        max_timers_per_key: 2,
        ..PartitionConfig::default()
    };
    let mut p = partition(config);
    for tag in 0..4 {
        submit(&mut p, 0, cmd("a", Cmd::SetTimer { delay_ms: 5, tag }));
    }
    let stats = p.stats();
    assert_eq!((stats.timers_pending, stats.timers_refused), (2, 2));
}

#[test]
fn producer_retries_apply_once() {
    let mut p = partition(PartitionConfig::default());
    let with_producer = |seq| {
        let mut input = cmd("a", Cmd::Add(1));
        input.producer = Some(ProducerRef {
            producer: "p1".into(),
            seq,
        });
        input
    };
    let mut out = Outputs::default();
    assert_eq!(
        p.submit(Timestamp(0), with_producer(1).as_ref(), &mut out),
        Ok(Submitted::Applied(Seq(1)))
    );
    assert_eq!(
        p.submit(Timestamp(0), with_producer(1).as_ref(), &mut out),
        Ok(Submitted::Duplicate)
    );
    assert_eq!(
        p.submit(Timestamp(0), with_producer(2).as_ref(), &mut out),
        Ok(Submitted::Applied(Seq(2)))
    );
    assert_eq!(out.log.len(), 2, "duplicates are not logged");
    assert_eq!(counter_state(&p, "a").map(|s| s.events), Some(2));
}

#[test]
fn producer_count_is_bounded() {
    let config = PartitionConfig {
        max_producers: 1,
        ..PartitionConfig::default()
    };
    let mut p = partition(config);
    for (producer, expect_ok) in [("p1", true), ("p2", false), ("p1", true)] {
        let mut input = cmd("a", Cmd::Add(1));
        input.producer = Some(ProducerRef {
            producer: producer.into(),
            seq: p.last_seq().0 + 1,
        });
        let result = p.submit(Timestamp(0), input.as_ref(), &mut Outputs::default());
        assert_eq!(result.is_ok(), expect_ok, "{producer}: {result:?}");
    }
}

#[test]
fn handler_panic_keeps_previous_state_for_active_passive_and_new_keys() {
    let config = PartitionConfig {
        idle_timeout_ms: 10,
        ..PartitionConfig::default()
    };
    let mut p = partition(config);
    submit(&mut p, 0, cmd("active", Cmd::Add(2)));
    submit(&mut p, 0, cmd("passive", Cmd::Add(3)));
    p.tick(Timestamp(20), &mut Outputs::default());
    submit(&mut p, 20, cmd("active", Cmd::Add(0)));
    assert_eq!(p.stats().keys_passive, 1);
    let before = p.dump().expect("encodes");

    for key in ["active", "passive", "new"] {
        let mut out = Outputs::default();
        let err = p
            .submit(Timestamp(30), cmd(key, Cmd::Panic).as_ref(), &mut out)
            .expect_err("panics");
        assert!(matches!(err, ApplyError::HandlerPanicked { .. }), "{err}");
        assert!(out.log.is_empty() && out.alerts.is_empty());
    }
    assert_eq!(p.dump().expect("encodes"), before, "nothing changed");
    // The partition keeps serving.
    submit(&mut p, 40, cmd("passive", Cmd::Add(1)));
    assert_eq!(counter_state(&p, "passive").map(|s| s.sum), Some(4));
}

#[test]
fn undecodable_payload_changes_nothing() {
    let mut p = partition(PartitionConfig::default());
    let mut input = cmd("a", Cmd::Add(1));
    input.payload = vec![0xff, 0xff, 0xff];
    let err = p
        .submit(Timestamp(0), input.as_ref(), &mut Outputs::default())
        .expect_err("bad payload");
    assert!(matches!(err, ApplyError::Codec(_)), "{err}");
    let mut trailing = cmd("a", Cmd::Add(1));
    trailing.payload.push(0);
    assert!(
        p.submit(Timestamp(0), trailing.as_ref(), &mut Outputs::default())
            .is_err()
    );
    assert_eq!(p.last_seq(), Seq(0));
    assert_eq!(counter_state(&p, "a"), None);
}

#[test]
fn long_keys_are_rejected() {
    let mut p = partition(PartitionConfig {
        max_key_bytes: 4,
        ..PartitionConfig::default()
    });
    let err = p
        .submit(
            Timestamp(0),
            cmd("12345", Cmd::Add(1)).as_ref(),
            &mut Outputs::default(),
        )
        .expect_err("too long");
    assert!(matches!(err, ApplyError::KeyTooLong { len: 5, limit: 4 }));
}

#[test]
fn replica_rejects_stale_epoch_and_gaps() {
    let mut owner = partition(PartitionConfig::default());
    owner.set_epoch(Epoch(3));
    let out = submit(&mut owner, 0, cmd("a", Cmd::Add(1)));
    let entry = logged(&out)[0].clone();

    let mut replica = partition(PartitionConfig::default());
    replica.set_epoch(Epoch(4));
    let err = replica
        .apply(&entry.view(), &mut Outputs::default())
        .expect_err("stale");
    assert!(matches!(err, ApplyError::StaleEpoch { .. }));

    let mut replica = partition(PartitionConfig::default());
    let gap = Entry {
        seq: Seq(2),
        ..entry.clone()
    };
    assert!(matches!(
        replica.apply(&gap.view(), &mut Outputs::default()),
        Err(ApplyError::OutOfOrder { .. })
    ));
    replica
        .apply(&entry.view(), &mut Outputs::default())
        .expect("next entry applies");
    assert_eq!(replica.epoch(), Epoch(3), "replica learns the epoch");
    assert!(matches!(
        replica.apply(&entry.view(), &mut Outputs::default()),
        Err(ApplyError::OutOfOrder { .. })
    ));
    assert!(!replica.set_epoch(Epoch(1)), "epochs never go down");
}

#[test]
fn log_time_never_runs_backwards() {
    let mut p = partition(PartitionConfig::default());
    submit(&mut p, 100, cmd("a", Cmd::Add(1)));
    let out = submit(&mut p, 50, cmd("a", Cmd::Add(1)));
    assert_eq!(logged(&out)[0].ts, Timestamp(100));
}

/// Found by the `wal_records` fuzz target: a replicated (or replayed)
/// entry older than the log's last one tripped a debug assertion, and in
/// release builds was applied with time running backwards. It is refused:
/// nothing applied, the replica asks for a snapshot.
#[test]
fn a_replicated_entry_whose_time_runs_backwards_is_refused() {
    let mut owner = partition(PartitionConfig::default());
    let first = logged(&submit(&mut owner, 100, cmd("a", Cmd::Add(1))))[0].clone();
    let second = Entry {
        seq: Seq(2),
        ts: Timestamp(50),
        ..first.clone()
    };
    let mut replica = partition(PartitionConfig::default());
    replica
        .apply(&first.view(), &mut Outputs::default())
        .expect("the first entry applies");
    assert_eq!(
        replica.apply(&second.view(), &mut Outputs::default()),
        Err(ApplyError::TimeBackwards {
            last: Timestamp(100),
            got: Timestamp(50),
        })
    );
    let bytes = postcard::to_stdvec(&second).expect("encodes");
    assert_eq!(
        replica.apply_replicated(Epoch(0), &bytes),
        eddy_core::Replicated::NeedSnapshot { have: Seq(1) }
    );
    assert_eq!(replica.last_seq(), Seq(1), "nothing applied");
    assert_eq!(counter_state(&replica, "a").map(|s| s.events), Some(1));
}

#[test]
fn alerts_carry_partition_and_seq() {
    let mut p = partition(PartitionConfig::default());
    submit(&mut p, 0, cmd("a", Cmd::Add(4)));
    let out = submit(&mut p, 0, cmd("a", Cmd::Add(7)));
    assert_eq!(out.alerts.len(), 1);
    let alert = &out.alerts[0];
    assert_eq!(
        (alert.seq, alert.kind, alert.key.as_str()),
        (Seq(2), "counter", "a")
    );
    assert_eq!(alert.alert, serde_json::json!({"Crossed": {"sum": 11}}));
    assert_eq!(alert.cause, None, "the event had no producer id");
}

#[test]
fn an_alert_names_the_producer_and_seq_of_its_event() {
    let mut p = partition(PartitionConfig::default());
    submit(&mut p, 0, cmd("a", Cmd::Add(4)));
    let mut input = cmd("a", Cmd::Add(7));
    input.producer = Some(ProducerRef {
        producer: "till-9".into(),
        seq: 42,
    });
    let out = submit(&mut p, 0, input);
    assert_eq!(out.alerts.len(), 1);
    assert_eq!(
        out.alerts[0].cause,
        Some(eddy_core::AlertCause {
            producer: "till-9".into(),
            seq: 42
        })
    );
    let json = serde_json::to_value(&out.alerts[0]).expect("serializes");
    assert_eq!(json["cause"]["producer"], "till-9");
}

#[test]
fn kinds_are_separate_namespaces() {
    let mut p = partition(PartitionConfig::default());
    submit(&mut p, 0, cmd("x", Cmd::Add(1)));
    submit(&mut p, 0, other("x", 41));
    assert_eq!(p.state_json(OTHER, "x"), Ok(Some(serde_json::json!(41))));
    assert_eq!(counter_state(&p, "x").map(|s| s.sum), Some(1));
}

#[test]
fn json_events_are_checked_against_the_kind() {
    let registry = registry();
    assert!(registry.event_from_json(COUNTER, r#"{"Add": 5}"#).is_ok());
    let err = registry
        .event_from_json(COUNTER, r#"{"Mul": 5}"#)
        .expect_err("unknown variant");
    assert!(err.to_string().contains("Mul"), "{err}");
    assert!(registry.check_event(OTHER, &[1]).is_ok());
    assert!(
        registry.check_event(OTHER, &[1, 2]).is_err(),
        "trailing bytes"
    );
}

#[test]
fn registry_refuses_duplicate_kinds() {
    let err = eddy_core::Registry::builder()
        .kind::<Counter>()
        .kind::<Counter>()
        .build()
        .err();
    assert_eq!(
        err,
        Some(eddy_core::RegistryError::DuplicateKind("counter"))
    );
}

#[test]
fn the_registry_fingerprint_names_the_kinds_and_their_order() {
    let both = registry();
    let reversed = eddy_core::Registry::builder()
        .kind::<Other>()
        .kind::<Counter>()
        .build()
        .unwrap();
    let one = eddy_core::Registry::builder()
        .kind::<Counter>()
        .build()
        .unwrap();
    assert_eq!(
        both.fingerprint(),
        registry().fingerprint(),
        "deterministic"
    );
    assert_ne!(both.fingerprint(), reversed.fingerprint(), "order matters");
    assert_ne!(both.fingerprint(), one.fingerprint(), "the set matters");
}
