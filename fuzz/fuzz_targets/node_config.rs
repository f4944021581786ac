//! Fuzz target: a node's config file (`ringlab_net::NodeConfig`), as `NodeConfig::load` reads
//! it: TOML into the schema, then `validate` (with the ring knobs' own validation). Never
//! panics; a config that parses prints back to TOML that parses to the same config, and
//! validates the same way. Then, since mutated text rarely keeps a config valid up to its
//! last check, the input also sets every `[totem]` knob and the node's numbers of a valid
//! config directly: `validate` never panics, whatever the values.
#![no_main]
use libfuzzer_sys::arbitrary::{Arbitrary, Result, Unstructured};
use ringlab_net::NodeConfig;
use ringlab_ring::config::Variant;

const BASE: &str = r#"
node_id = 1
bind = "127.0.0.1"
control = "n1.sock"
state_dir = "state"
[[nodes]]
id = 1
addr = "127.0.0.1"
[[nodes]]
id = 2
addr = "127.0.0.2"
"#;

/// Mostly small values around the checks' bounds, sometimes anything.
fn num<'a, T: Arbitrary<'a> + From<u16>>(u: &mut Unstructured<'a>) -> Result<T> {
    if u.ratio(1, 4)? {
        u.arbitrary()
    } else {
        Ok(T::from(u.arbitrary::<u16>()?))
    }
}

fn opt<'a, T: Arbitrary<'a> + From<u16>>(u: &mut Unstructured<'a>) -> Result<Option<T>> {
    Ok(if u.arbitrary()? { Some(num(u)?) } else { None })
}

fn knobs(u: &mut Unstructured<'_>) -> Result<NodeConfig> {
    let mut c: NodeConfig = toml::from_str(BASE).expect("the base config parses");
    c.node_id = u.int_in_range(0..=3)?;
    c.port = u.arbitrary()?;
    c.recv_buffer = opt(u)?;
    c.send_buffer = opt(u)?;
    let t = &mut c.totem;
    t.token = num(u)?;
    t.token_retransmits_before_loss_const = num(u)?;
    t.token_retransmit = opt(u)?;
    t.hold = opt(u)?;
    t.join = num(u)?;
    t.consensus = opt(u)?;
    t.merge = num(u)?;
    t.fail_recv_const = num(u)?;
    t.seqno_unchanged_const = num(u)?;
    t.window_size = num(u)?;
    t.max_messages = num(u)?;
    t.miss_count_const = num(u)?;
    t.variant = if u.arbitrary()? {
        Variant::Accelerated
    } else {
        Variant::Classic
    };
    t.accelerated_window = num(u)?;
    t.netmtu = num(u)?;
    t.send_queue_bytes = if u.arbitrary()? { num(u)? } else { 4 << 20 };
    t.reachability = u.arbitrary()?;
    t.pending_joins = u.arbitrary()?;
    t.adaptive_token_retransmit = u.arbitrary()?;
    Ok(c)
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(c) = knobs(&mut Unstructured::new(data)) {
        let _ = c.validate();
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(c) = toml::from_str::<NodeConfig>(text) else {
        return;
    };
    let verdict = c.validate().map_err(|e| e.to_string());
    let printed = toml::to_string(&c).expect("a parsed config prints");
    let back: NodeConfig = toml::from_str(&printed).unwrap_or_else(|e| panic!("{printed}: {e}"));
    assert_eq!(format!("{back:?}"), format!("{c:?}"), "{printed}");
    assert_eq!(back.validate().map_err(|e| e.to_string()), verdict);
});
