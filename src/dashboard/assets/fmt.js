// Number and time formatting for humans: 1.2k, $0.04, 35 ms, 2 min ago.

const dash = '–';

/** 1234 -> "1.2k", 1234567 -> "1.2M"; null -> "–". */
export function count(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return dash;
  const a = Math.abs(n);
  if (a < 1000) return Number.isInteger(n) ? String(n) : n.toFixed(1).replace(/\.0$/, '');
  const units = [['T', 1e12], ['B', 1e9], ['M', 1e6], ['k', 1e3]];
  for (const [u, v] of units) {
    if (a >= v) {
      const x = n / v;
      return (Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(1).replace(/\.0$/, '')) + u;
    }
  }
  return String(n);
}

/** US dollars: $0 / $0.0004 / $0.04 / $12.30 / $1.2k. */
export function usd(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return dash;
  if (n === 0) return '$0';
  const a = Math.abs(n);
  const sign = n < 0 ? '-' : '';
  if (a >= 10000) return sign + '$' + count(a);
  if (a >= 1) return sign + '$' + a.toFixed(2);
  if (a >= 0.01) return sign + '$' + a.toFixed(2);
  // Fractions of a cent (one cheap request): two significant digits, never an exponent.
  if (a >= 0.000001) return sign + '$' + a.toFixed(Math.ceil(-Math.log10(a)) + 1).replace(/0+$/, '');
  return sign + '<$0.000001';
}

/** Milliseconds: "0.8 ms", "35 ms", "1.2 s". */
export function ms(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return dash;
  if (n < 10) return n.toFixed(1).replace(/\.0$/, '') + ' ms';
  if (n < 1000) return Math.round(n) + ' ms';
  if (n < 60000) return (n / 1000).toFixed(1).replace(/\.0$/, '') + ' s';
  return (n / 60000).toFixed(1).replace(/\.0$/, '') + ' min';
}

/** A ratio 0..1 as "87%" (one decimal under 10 %). */
export function pct(r) {
  if (r === null || r === undefined || Number.isNaN(r)) return dash;
  const p = r * 100;
  if (p > 0 && p < 0.1) return '<0.1%';
  if (p > 0 && p < 10) return p.toFixed(1).replace(/\.0$/, '') + '%';
  return Math.round(p) + '%';
}

/** Per second rate: "0.4/s", "12/s", "1.2k/s". */
export function rate(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return dash;
  if (n > 0 && n < 1) return n.toPrecision(2).replace(/\.?0+$/, '') + '/s';
  if (n > 0 && n < 10) return n.toFixed(1).replace(/\.0$/, '') + '/s';
  return count(Math.round(n)) + '/s';
}

/** Bytes: "812 B", "1.2 MB". */
export function bytes(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return dash;
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let x = n;
  while (x >= 1024 && i < units.length - 1) { x /= 1024; i += 1; }
  return (i === 0 ? String(x) : x.toFixed(1).replace(/\.0$/, '')) + ' ' + units[i];
}

/** Seconds as "45 s", "3 min", "2 h", "4 d". */
export function duration(s) {
  if (s === null || s === undefined || Number.isNaN(s)) return dash;
  if (s < 60) return Math.round(s) + ' s';
  if (s < 3600) return Math.round(s / 60) + ' min';
  if (s < 86400) return Math.round(s / 3600) + ' h';
  return Math.round(s / 86400) + ' d';
}

/** Local time of a Unix millisecond timestamp: "14:03:07" today, else "Nov 27 14:03". */
export function time(msEpoch) {
  if (!msEpoch) return dash;
  const d = new Date(msEpoch);
  const now = new Date();
  const hm = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  if (d.toDateString() === now.toDateString()) return hm;
  return d.toLocaleDateString([], { month: 'short', day: 'numeric' }) + ' ' + hm.slice(0, 5);
}

/** Axis label for a bucket start (Unix seconds) given the bucket size. */
export function axisTime(tSec, bucketSeconds) {
  const d = new Date(tSec * 1000);
  if (bucketSeconds >= 3600) {
    return d.toLocaleDateString([], { month: 'short', day: 'numeric' }) + ' ' +
      String(d.getHours()).padStart(2, '0') + 'h';
  }
  return String(d.getHours()).padStart(2, '0') + ':' + String(d.getMinutes()).padStart(2, '0');
}
