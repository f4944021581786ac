//! Fuzz target: event-record files (records come from real nodes' files) through the one
//! reader every tool uses: never panics; every record read writes as a JSON line that reads
//! back to the same record.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ringlab_records::Record;
fuzz_target!(|data: &[u8]| {
    let mut records = Vec::new();
    let _ = ringlab_records::read_from(std::path::Path::new("fuzz"), data, &mut records);
    for r in &records {
        let mut line = Vec::new();
        ringlab_records::encode_line(r, &mut line);
        assert_eq!(
            serde_json::from_slice::<Record>(&line).ok().as_ref(),
            Some(r)
        );
    }
});
