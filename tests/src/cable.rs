//! A network cable that can be pulled: a TCP forwarder on a free port in front of a server.
//! A sensor connected through it can be taken offline (every connection dropped, new ones
//! closed at once) while its process keeps running, as when a site's uplink fails.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A forwarder from `port` to an upstream port on 127.0.0.1.
#[derive(Debug)]
pub struct Cable {
    /// Where clients connect.
    pub port: u16,
    plugged: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Cable {
    /// Forwards a free port to `upstream`.
    pub fn to(upstream: u16) -> Cable {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind a free port");
        let port = listener.local_addr().expect("addr").port();
        let plugged = Arc::new(AtomicBool::new(true));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (p, o) = (plugged.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if !p.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                if let Ok(mut list) = o.lock() {
                    list.extend(
                        [client.try_clone(), server.try_clone()]
                            .into_iter()
                            .flatten(),
                    );
                }
                pipe(&client, &server);
                pipe(&server, &client);
            }
        });
        Cable {
            port,
            plugged,
            open,
        }
    }

    /// Pulls the cable: open connections die, new ones are refused.
    pub fn unplug(&self) {
        self.plugged.store(false, Ordering::SeqCst);
        if let Ok(mut list) = self.open.lock() {
            for s in list.drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }

    /// Plugs it back in.
    pub fn plug(&self) {
        self.plugged.store(true, Ordering::SeqCst);
    }
}

/// Copies `from` into `to` on a thread until either side closes.
fn pipe(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
