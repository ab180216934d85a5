//! Cost at published AWS S3 prices (S3 Standard, us-east-1), for `stats` and `demo`.
//!
//! Prices as published on <https://aws.amazon.com/s3/pricing/> (first 50 TB tier). Storage is
//! billed per GB-month where AWS's GB is 2^30 bytes. PUT, COPY, POST and LIST requests are one
//! price, GET and other reads another; DELETE is free. Requests and data transfer out are not
//! part of the storage figure.

/// S3 Standard storage, USD per GB-month (GB = 2^30 bytes), first 50 TB.
pub(crate) const STORAGE_USD_PER_GB_MONTH: f64 = 0.023;
/// PUT, COPY, POST and LIST requests, USD per 1,000.
pub(crate) const PUT_USD_PER_1000: f64 = 0.005;
/// GET and other read requests, USD per 1,000.
pub(crate) const GET_USD_PER_1000: f64 = 0.0004;
/// Bytes in AWS's billing GB.
pub(crate) const BYTES_PER_GB: f64 = 1024.0 * 1024.0 * 1024.0;

/// The assumptions, as printed under every cost figure.
pub(crate) const ASSUMPTIONS: &str = "AWS S3 Standard, us-east-1, first 50 TB: storage $0.023 per \
     GB-month (GB = 2^30 bytes), $0.005 per 1,000 PUT/COPY/POST/LIST, $0.0004 per 1,000 GET; \
     deletes free; data transfer not included";

/// Storage cost of `bytes` for one month, in USD.
pub(crate) fn storage_per_month(bytes: u64) -> f64 {
    bytes as f64 / BYTES_PER_GB * STORAGE_USD_PER_GB_MONTH
}

/// Cost of `puts` PUT requests, in USD.
pub(crate) fn puts(puts: u64) -> f64 {
    puts as f64 / 1000.0 * PUT_USD_PER_1000
}

/// Cost of `gets` GET requests, in USD.
pub(crate) fn gets(gets: u64) -> f64 {
    gets as f64 / 1000.0 * GET_USD_PER_1000
}

/// A dollar amount for people: cents above $1, four decimals below, six below $0.0001.
pub(crate) fn usd(amount: f64) -> String {
    if amount >= 100.0 {
        format!("${amount:.0}")
    } else if amount >= 1.0 {
        format!("${amount:.2}")
    } else if amount >= 0.0001 || amount == 0.0 {
        format!("${amount:.4}")
    } else {
        format!("${amount:.6}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_prices() {
        // Omi's figure: one PUT per 5 s chunk is 720 per recorded hour.
        assert!((puts(720) - 0.0036).abs() < 1e-12);
        assert!((storage_per_month(1 << 30) - 0.023).abs() < 1e-12);
        assert!((gets(1_000_000) - 0.4).abs() < 1e-12);
        assert_eq!(usd(0.0036), "$0.0036");
        assert_eq!(usd(12.345), "$12.35");
        assert_eq!(usd(1982.4), "$1982");
        assert_eq!(usd(0.000036), "$0.000036");
        assert_eq!(usd(0.0), "$0.0000");
    }
}
