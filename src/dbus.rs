//! A minimal, synchronous D-Bus client: enough to call a few methods of
//! systemd-machined and systemd on the system bus.
//!
//! Why by hand: zbus 6 dropped its blocking API, and zbus 5's runs an executor
//! thread — the supervisor forks helpers and clones the container, which is
//! only sound in a single-threaded process (sys/process.rs asserts it). The
//! dbus crate needs libdbus, which does not link statically here. The wire
//! protocol for a handful of method calls is small: SASL EXTERNAL, then
//! little-endian messages whose bodies are built from the few types below.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DbusError {
    #[error("connecting to the system bus at {0}: {1}")]
    Connect(String, #[source] std::io::Error),
    #[error("talking to the bus: {0}")]
    Io(#[from] std::io::Error),
    #[error("the bus refused authentication: {0}")]
    Auth(String),
    #[error("{name}: {message}")]
    Remote { name: String, message: String },
    #[error("malformed message from the bus: {0}")]
    Protocol(&'static str),
}

impl DbusError {
    /// The D-Bus error name, for errors the bus or a service returned.
    pub fn remote_name(&self) -> Option<&str> {
        match self {
            DbusError::Remote { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// A value in a message body. Only what the calls nixrun makes need.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    U32(u32),
    I32(i32),
    U64(u64),
    Str(String),
    ObjectPath(String),
    Signature(String),
    Bytes(Vec<u8>),
    /// An array of one element type, given by its signature (so that empty
    /// arrays have a type too).
    Array(String, Vec<Value>),
    Struct(Vec<Value>),
    Variant(Box<Value>),
}

impl Value {
    pub fn signature(&self) -> String {
        match self {
            Value::Bool(_) => "b".into(),
            Value::U32(_) => "u".into(),
            Value::I32(_) => "i".into(),
            Value::U64(_) => "t".into(),
            Value::Str(_) => "s".into(),
            Value::ObjectPath(_) => "o".into(),
            Value::Signature(_) => "g".into(),
            Value::Bytes(_) => "ay".into(),
            Value::Array(elem, _) => format!("a{elem}"),
            Value::Struct(fields) => {
                format!(
                    "({})",
                    fields.iter().map(Value::signature).collect::<String>()
                )
            }
            Value::Variant(_) => "v".into(),
        }
    }

    /// A `(sv)` pair, the element of property lists.
    pub fn property(name: &str, value: Value) -> Value {
        Value::Struct(vec![
            Value::Str(name.into()),
            Value::Variant(Box::new(value)),
        ])
    }
}

/// Alignment of a type, by the first character of its signature.
fn alignment(sig: &str) -> usize {
    match sig.as_bytes().first() {
        Some(b'y' | b'g' | b'v') => 1,
        Some(b'b' | b'u' | b'i' | b's' | b'o' | b'a') => 4,
        Some(b't' | b'x' | b'd' | b'(' | b'{') => 8,
        _ => 1,
    }
}

/// Writes values in D-Bus's little-endian wire format.
#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn pad(&mut self, to: usize) {
        while self.buf.len() % to != 0 {
            self.buf.push(0);
        }
    }

    fn u32(&mut self, v: u32) {
        self.pad(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn string(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }

    fn signature(&mut self, s: &str) {
        self.buf.push(s.len() as u8);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }

    fn value(&mut self, v: &Value) {
        match v {
            Value::Bool(b) => self.u32(u32::from(*b)),
            Value::U32(n) => self.u32(*n),
            Value::I32(n) => self.u32(*n as u32),
            Value::U64(n) => {
                self.pad(8);
                self.buf.extend_from_slice(&n.to_le_bytes());
            }
            Value::Str(s) | Value::ObjectPath(s) => self.string(s),
            Value::Signature(s) => self.signature(s),
            Value::Bytes(b) => {
                self.u32(b.len() as u32);
                self.buf.extend_from_slice(b);
            }
            Value::Array(elem, items) => {
                self.pad(4);
                let len_at = self.buf.len();
                self.buf.extend_from_slice(&[0; 4]);
                // The length counts from the first element, after its padding.
                self.pad(alignment(elem));
                let start = self.buf.len();
                for i in items {
                    self.value(i);
                }
                let len = (self.buf.len() - start) as u32;
                self.buf[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
            }
            Value::Struct(fields) => {
                self.pad(8);
                for f in fields {
                    self.value(f);
                }
            }
            Value::Variant(inner) => {
                self.signature(&inner.signature());
                self.value(inner);
            }
        }
    }
}

/// Reads what the calls' replies carry (strings, object paths, u32).
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn align(&mut self, to: usize) {
        self.pos = self.pos.div_ceil(to) * to;
    }

    fn u32(&mut self) -> Result<u32, DbusError> {
        self.align(4);
        let b = self
            .buf
            .get(self.pos..self.pos + 4)
            .ok_or(DbusError::Protocol("truncated u32"))?;
        self.pos += 4;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    fn string(&mut self) -> Result<String, DbusError> {
        let len = self.u32()? as usize;
        let b = self
            .buf
            .get(self.pos..self.pos + len)
            .ok_or(DbusError::Protocol("truncated string"))?;
        self.pos += len + 1;
        Ok(String::from_utf8_lossy(b).into_owned())
    }

    fn signature(&mut self) -> Result<String, DbusError> {
        let len = *self
            .buf
            .get(self.pos)
            .ok_or(DbusError::Protocol("truncated signature"))? as usize;
        let b = self
            .buf
            .get(self.pos + 1..self.pos + 1 + len)
            .ok_or(DbusError::Protocol("truncated signature"))?;
        self.pos += len + 2;
        Ok(String::from_utf8_lossy(b).into_owned())
    }
}

const METHOD_CALL: u8 = 1;
const METHOD_RETURN: u8 = 2;
const ERROR: u8 = 3;

// Header field codes.
const F_PATH: u8 = 1;
const F_INTERFACE: u8 = 2;
const F_MEMBER: u8 = 3;
const F_ERROR_NAME: u8 = 4;
const F_REPLY_SERIAL: u8 = 5;
const F_DESTINATION: u8 = 6;
const F_SIGNATURE: u8 = 8;

/// A message: header with `fields` (code, value), then the body.
fn message(kind: u8, serial: u32, fields: &[(u8, Value)], body: &[Value]) -> Vec<u8> {
    let mut bw = Writer::default();
    for v in body {
        bw.value(v);
    }
    let mut w = Writer::default();
    w.buf.extend_from_slice(&[b'l', kind, 0, 1]);
    w.buf
        .extend_from_slice(&(bw.buf.len() as u32).to_le_bytes());
    w.buf.extend_from_slice(&serial.to_le_bytes());
    // The fields are an a(yv), written by hand because the code is a byte.
    let len_at = w.buf.len();
    w.buf.extend_from_slice(&[0; 4]);
    w.pad(8);
    let start = w.buf.len();
    for (code, v) in fields {
        w.pad(8);
        w.buf.push(*code);
        w.value(&Value::Variant(Box::new(v.clone())));
    }
    let len = (w.buf.len() - start) as u32;
    w.buf[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
    w.pad(8);
    w.buf.extend_from_slice(&bw.buf);
    w.buf
}

/// A method call, serialized.
fn method_call(
    serial: u32,
    dest: &str,
    path: &str,
    iface: &str,
    member: &str,
    args: &[Value],
) -> Vec<u8> {
    let sig: String = args.iter().map(Value::signature).collect();
    let mut fields = vec![
        (F_PATH, Value::ObjectPath(path.into())),
        (F_INTERFACE, Value::Str(iface.into())),
        (F_MEMBER, Value::Str(member.into())),
        (F_DESTINATION, Value::Str(dest.into())),
    ];
    if !sig.is_empty() {
        fields.push((F_SIGNATURE, Value::Signature(sig)));
    }
    message(METHOD_CALL, serial, &fields, args)
}

/// A message read off the bus, as far as we look at it.
#[derive(Debug)]
struct Message {
    kind: u8,
    reply_serial: Option<u32>,
    error_name: Option<String>,
    signature: String,
    body: Vec<u8>,
}

impl Message {
    /// The body's first value, if it is a variant holding a u32 (what
    /// org.freedesktop.DBus.Properties.Get returns for a `u` property).
    fn first_variant_u32(&self) -> Option<u32> {
        if self.signature != "v" {
            return None;
        }
        let mut r = Reader {
            buf: &self.body,
            pos: 0,
        };
        (r.signature().ok()? == "u").then(|| r.u32().ok()).flatten()
    }

    /// The first value of the body, if it is a string or object path.
    fn first_string(&self) -> Option<String> {
        if !self.signature.starts_with(['s', 'o']) {
            return None;
        }
        Reader {
            buf: &self.body,
            pos: 0,
        }
        .string()
        .ok()
    }
}

fn parse_header(head: &[u8; 16]) -> Result<(usize, usize), DbusError> {
    if head[0] != b'l' {
        return Err(DbusError::Protocol("big-endian messages are not supported"));
    }
    let body_len = u32::from_le_bytes(head[4..8].try_into().expect("4")) as usize;
    let fields_len = u32::from_le_bytes(head[12..16].try_into().expect("4")) as usize;
    if body_len > 1 << 26 || fields_len > 1 << 26 {
        return Err(DbusError::Protocol("message too long"));
    }
    Ok((body_len, fields_len))
}

fn parse_fields(kind: u8, fields: &[u8], body: Vec<u8>) -> Result<Message, DbusError> {
    // The field array starts at offset 16 of the message: alignments are
    // relative to the message start, so read it with that offset.
    let mut whole = vec![0u8; 16];
    whole.extend_from_slice(fields);
    let mut r = Reader {
        buf: &whole,
        pos: 16,
    };
    let mut m = Message {
        kind,
        reply_serial: None,
        error_name: None,
        signature: String::new(),
        body,
    };
    while r.pos < whole.len() {
        r.align(8);
        if r.pos >= whole.len() {
            break;
        }
        let code = whole[r.pos];
        r.pos += 1;
        let sig = r.signature()?;
        match sig.as_str() {
            "s" | "o" => {
                let s = r.string()?;
                if code == F_ERROR_NAME {
                    m.error_name = Some(s);
                }
            }
            "u" => {
                let v = r.u32()?;
                if code == F_REPLY_SERIAL {
                    m.reply_serial = Some(v);
                }
            }
            "g" => {
                let s = r.signature()?;
                if code == F_SIGNATURE {
                    m.signature = s;
                }
            }
            _ => return Err(DbusError::Protocol("unexpected header field type")),
        }
    }
    Ok(m)
}

/// A connection to the system bus.
pub struct Bus {
    sock: UnixStream,
    serial: u32,
}

/// Where the system bus listens ($DBUS_SYSTEM_BUS_ADDRESS or the default).
pub fn system_bus_path() -> String {
    std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
        .ok()
        .and_then(|a| {
            a.split(';')
                .filter_map(|t| t.strip_prefix("unix:"))
                .flat_map(|t| t.split(','))
                .find_map(|kv| kv.strip_prefix("path=").map(str::to_string))
        })
        .unwrap_or_else(|| "/run/dbus/system_bus_socket".into())
}

impl Bus {
    /// Connects to the system bus, authenticates as our uid and says Hello.
    pub fn system() -> Result<Bus, DbusError> {
        let path = system_bus_path();
        let sock = UnixStream::connect(&path).map_err(|e| DbusError::Connect(path.clone(), e))?;
        Bus::over(sock)
    }

    /// Runs the protocol over an already connected socket.
    pub fn over(sock: UnixStream) -> Result<Bus, DbusError> {
        sock.set_read_timeout(Some(Duration::from_secs(25)))?;
        sock.set_write_timeout(Some(Duration::from_secs(25)))?;
        let mut bus = Bus { sock, serial: 0 };
        bus.authenticate()?;
        bus.call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "Hello",
            &[],
        )?;
        Ok(bus)
    }

    fn authenticate(&mut self) -> Result<(), DbusError> {
        let uid = nix::unistd::geteuid().as_raw().to_string();
        let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
        self.sock
            .write_all(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes())?;
        let line = self.read_line()?;
        if !line.starts_with("OK ") {
            return Err(DbusError::Auth(line));
        }
        self.sock.write_all(b"BEGIN\r\n")?;
        Ok(())
    }

    fn read_line(&mut self) -> Result<String, DbusError> {
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            if self.sock.read(&mut b)? == 0 {
                return Err(DbusError::Auth("connection closed".into()));
            }
            line.push(b[0]);
            if line.len() > 4096 {
                return Err(DbusError::Protocol("authentication line too long"));
            }
        }
        line.truncate(line.len() - 2);
        Ok(String::from_utf8_lossy(&line).into_owned())
    }

    fn read_message(&mut self) -> Result<Message, DbusError> {
        let mut head = [0u8; 16];
        self.sock.read_exact(&mut head)?;
        let (body_len, fields_len) = parse_header(&head)?;
        let padded = fields_len.div_ceil(8) * 8;
        let mut fields = vec![0u8; padded];
        self.sock.read_exact(&mut fields)?;
        fields.truncate(fields_len);
        let mut body = vec![0u8; body_len];
        self.sock.read_exact(&mut body)?;
        parse_fields(head[1], &fields, body)
    }

    /// Calls a method and waits for its reply; returns the reply's first
    /// value if it is a string or object path.
    pub fn call(
        &mut self,
        dest: &str,
        path: &str,
        iface: &str,
        member: &str,
        args: &[Value],
    ) -> Result<Option<String>, DbusError> {
        Ok(self
            .call_message(dest, path, iface, member, args)?
            .first_string())
    }

    /// A `u` property of an object.
    pub fn get_u32(
        &mut self,
        dest: &str,
        path: &str,
        iface: &str,
        prop: &str,
    ) -> Result<u32, DbusError> {
        self.call_message(
            dest,
            path,
            "org.freedesktop.DBus.Properties",
            "Get",
            &[Value::Str(iface.into()), Value::Str(prop.into())],
        )?
        .first_variant_u32()
        .ok_or(DbusError::Protocol("the property is not a u32"))
    }

    fn call_message(
        &mut self,
        dest: &str,
        path: &str,
        iface: &str,
        member: &str,
        args: &[Value],
    ) -> Result<Message, DbusError> {
        self.serial += 1;
        let serial = self.serial;
        self.sock
            .write_all(&method_call(serial, dest, path, iface, member, args))?;
        loop {
            let m = self.read_message()?;
            if m.reply_serial != Some(serial) {
                continue; // a signal, or something else not for us
            }
            return match m.kind {
                METHOD_RETURN => Ok(m),
                ERROR => Err(DbusError::Remote {
                    name: m.error_name.clone().unwrap_or_default(),
                    message: m.first_string().unwrap_or_default(),
                }),
                _ => Err(DbusError::Protocol("unexpected reply type")),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_marshalled_as_the_spec_says() {
        let mut w = Writer::default();
        w.value(&Value::Str("ab".into()));
        assert_eq!(w.buf, [2, 0, 0, 0, b'a', b'b', 0]);
        // An ay after a byte-sized prefix: length 4-aligned, no element padding.
        let mut w = Writer::default();
        w.value(&Value::Signature("ay".into()));
        w.value(&Value::Bytes(vec![1, 2, 3]));
        assert_eq!(w.buf, [2, b'a', b'y', 0, 3, 0, 0, 0, 1, 2, 3]);
        // An empty array of structs: length 0, then padding to 8 for the (absent)
        // first element.
        let mut w = Writer::default();
        w.value(&Value::Array("(sv)".into(), vec![]));
        assert_eq!(w.buf, [0, 0, 0, 0, 0, 0, 0, 0]);
        // A variant holding a u32.
        let mut w = Writer::default();
        w.value(&Value::Variant(Box::new(Value::U32(7))));
        assert_eq!(w.buf, [1, b'u', 0, 0, 7, 0, 0, 0]);
        assert_eq!(Value::Array("(sv)".into(), vec![]).signature(), "a(sv)");
        assert_eq!(
            Value::property("Delegate", Value::Bool(true)).signature(),
            "(sv)"
        );
    }

    #[test]
    fn a_call_reads_back_with_its_fields() {
        let msg = method_call(
            9,
            "org.freedesktop.machine1",
            "/org/freedesktop/machine1",
            "org.freedesktop.machine1.Manager",
            "UnregisterMachine",
            &[Value::Str("foo".into())],
        );
        let head: [u8; 16] = msg[..16].try_into().unwrap();
        let (body_len, fields_len) = parse_header(&head).unwrap();
        assert_eq!(msg.len(), 16 + fields_len.div_ceil(8) * 8 + body_len);
        let body = msg[msg.len() - body_len..].to_vec();
        let m = parse_fields(head[1], &msg[16..16 + fields_len], body).unwrap();
        assert_eq!(m.kind, METHOD_CALL);
        assert_eq!(m.signature, "s");
        assert_eq!(m.first_string().as_deref(), Some("foo"));
    }

    /// A bus daemon stand-in on the other end of a socketpair: checks the
    /// authentication, answers Hello, then answers one call with an error.
    #[test]
    fn authentication_hello_and_errors_over_a_socket() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || {
            let mut s = theirs;
            let mut got = Vec::new();
            let mut b = [0u8; 1];
            while !got.ends_with(b"\r\n") {
                s.read_exact(&mut b).unwrap();
                got.push(b[0]);
            }
            assert!(got.starts_with(b"\0AUTH EXTERNAL "), "{got:?}");
            s.write_all(b"OK 0123456789abcdef\r\n").unwrap();
            let mut begin = [0u8; 7];
            s.read_exact(&mut begin).unwrap();
            assert_eq!(&begin, b"BEGIN\r\n");
            let reply =
                |s: &mut UnixStream, kind: u8, serial: u32, err: Option<&str>, body: Value| {
                    let mut fields: Vec<(u8, Value)> = vec![(F_REPLY_SERIAL, Value::U32(serial))];
                    if let Some(e) = err {
                        fields.push((F_ERROR_NAME, Value::Str(e.into())));
                    }
                    fields.push((F_SIGNATURE, Value::Signature(body.signature())));
                    s.write_all(&message(kind, 1000, &fields, &[body])).unwrap();
                };
            let read_call = |s: &mut UnixStream| -> u32 {
                let mut head = [0u8; 16];
                s.read_exact(&mut head).unwrap();
                let (body_len, fields_len) = parse_header(&head).unwrap();
                let mut rest = vec![0u8; fields_len.div_ceil(8) * 8 + body_len];
                s.read_exact(&mut rest).unwrap();
                u32::from_le_bytes(head[8..12].try_into().unwrap())
            };
            let hello = read_call(&mut s);
            reply(
                &mut s,
                METHOD_RETURN,
                hello,
                None,
                Value::Str(":1.42".into()),
            );
            let call = read_call(&mut s);
            reply(
                &mut s,
                ERROR,
                call,
                Some("org.freedesktop.machine1.NoSuchMachine"),
                Value::Str("No machine 'foo' known".into()),
            );
        });
        let mut bus = Bus::over(ours).unwrap();
        let e = bus
            .call(
                "org.freedesktop.machine1",
                "/org/freedesktop/machine1",
                "org.freedesktop.machine1.Manager",
                "UnregisterMachine",
                &[Value::Str("foo".into())],
            )
            .unwrap_err();
        assert_eq!(
            e.remote_name(),
            Some("org.freedesktop.machine1.NoSuchMachine")
        );
        assert!(e.to_string().contains("No machine 'foo' known"));
        server.join().unwrap();
    }
}
