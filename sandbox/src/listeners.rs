//! Binding the three services' listeners, at fixed ports after the order service's or at
//! random ones for tests.

use std::io;

use tokio::net::TcpListener;

/// One bound listener per service.
#[derive(Debug)]
pub struct SandboxListeners {
    pub inventory: TcpListener,
    pub payment: TcpListener,
    pub shipping: TcpListener,
}

impl SandboxListeners {
    /// Binds payment on `base_port + 1`, inventory on `+ 2` and shipping on `+ 3` (base 8004,
    /// the order service's port, gives the platform's defaults 8005/8006/8007); base 0 binds
    /// three random free ports.
    pub async fn bind(host: &str, base_port: u16) -> io::Result<Self> {
        let port = |offset: u16| -> io::Result<u16> {
            if base_port == 0 {
                return Ok(0);
            }
            base_port.checked_add(offset).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("base port {base_port} leaves no room for three services"),
                )
            })
        };
        let payment = TcpListener::bind((host, port(1)?)).await?;
        let inventory = TcpListener::bind((host, port(2)?)).await?;
        let shipping = TcpListener::bind((host, port(3)?)).await?;
        Ok(Self {
            inventory,
            payment,
            shipping,
        })
    }
}
