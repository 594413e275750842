//! Redis replies as the runner reads them: stream entries as messages, and the rows of
//! XPENDING. Replies that do not have the expected shape give nothing rather than an
//! error, as an empty stream would.

use super::wire::Message;
use redis::Value;

/// The rows of an XPENDING reply: (entry id, deliveries so far).
pub(super) fn pending_rows(value: &Value) -> Vec<(String, u32)> {
    let Value::Array(rows) = value else {
        return Vec::new();
    };
    rows.iter()
        .filter_map(|row| match row {
            Value::Array(fields) if fields.len() >= 4 => {
                Some((text(&fields[0]), text(&fields[3]).parse().unwrap_or(0)))
            }
            _ => None,
        })
        .collect()
}

/// Entries of an XREAD/XREADGROUP reply: (stream, entry id, message).
pub(super) fn entries(value: &Value) -> Vec<(String, String, Message)> {
    let mut out = Vec::new();
    let streams: Vec<(&Value, &Value)> = match value {
        Value::Array(items) => items
            .iter()
            .filter_map(|s| match s {
                Value::Array(pair) if pair.len() == 2 => Some((&pair[0], &pair[1])),
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
        _ => Vec::new(),
    };
    for (name, list) in streams {
        let stream = text(name);
        out.extend(
            entry_list(list)
                .into_iter()
                .map(|(id, m)| (stream.clone(), id, m)),
        );
    }
    out
}

/// A list of `[id, [field, value, …]]` entries (XRANGE, XREVRANGE, XCLAIM, one stream
/// of XREAD).
pub(super) fn entry_list(value: &Value) -> Vec<(String, Message)> {
    let Value::Array(list) = value else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|entry| match entry {
            Value::Array(pair) if pair.len() == 2 => {
                let id = text(&pair[0]);
                let mut message = Message::new();
                if let Value::Array(kv) = &pair[1] {
                    for chunk in kv.chunks(2) {
                        if let [k, v] = chunk {
                            message.fields.push((text(k), bytes(v)));
                        }
                    }
                }
                Some((id, message))
            }
            _ => None,
        })
        .collect()
}

fn text(value: &Value) -> String {
    String::from_utf8_lossy(&bytes(value)).into_owned()
}

fn bytes(value: &Value) -> Vec<u8> {
    match value {
        Value::BulkString(b) => b.clone(),
        Value::SimpleString(s) => s.as_bytes().to_vec(),
        Value::Int(i) => i.to_string().into_bytes(),
        Value::Okay => b"OK".to_vec(),
        _ => Vec::new(),
    }
}
