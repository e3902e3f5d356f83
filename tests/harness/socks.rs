//! The client side of SOCKS5, for `-D` tests.

use crate::*;

/// Where a SOCKS5 CONNECT should go.
pub enum SocksTarget<'a> {
    Ipv4([u8; 4], u16),
    Domain(&'a str, u16),
}

/// Opens a SOCKS5 CONNECT through a proxy at `proxy` (no authentication).
pub fn socks5_connect(proxy: &SocketAddr, target: SocksTarget<'_>, timeout: Duration) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect_timeout(proxy, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(&[5, 1, 0])?;
    let mut r = [0u8; 2];
    s.read_exact(&mut r)?;
    if r != [5, 0] {
        return Err(std::io::Error::other(format!("SOCKS5 method reply {r:?}")));
    }
    let mut req = vec![5, 1, 0];
    match target {
        SocksTarget::Ipv4(ip, port) => {
            req.push(1);
            req.extend_from_slice(&ip);
            req.extend_from_slice(&port.to_be_bytes());
        }
        SocksTarget::Domain(name, port) => {
            req.push(3);
            req.push(name.len() as u8);
            req.extend_from_slice(name.as_bytes());
            req.extend_from_slice(&port.to_be_bytes());
        }
    }
    s.write_all(&req)?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head)?;
    if head[0] != 5 || head[1] != 0 {
        return Err(std::io::Error::other(format!("SOCKS5 connect reply {head:?}")));
    }
    let rest = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut l = [0u8; 1];
            s.read_exact(&mut l)?;
            l[0] as usize + 2
        }
        t => return Err(std::io::Error::other(format!("SOCKS5 address type {t}"))),
    };
    let mut skip = vec![0u8; rest];
    s.read_exact(&mut skip)?;
    Ok(s)
}
