-- wrk script: one fixed absolute-form request through a proxy, with Basic
-- proxy credentials (bench/auth_bench.py).
--
--   wrk ... -s proxy_auth.lua http://127.0.0.1:PROXYPORT/ -- TARGET HOSTHEADER BASE64CREDS
--
-- As ../shared/bench/lua/absolute.lua, plus a Proxy-Authorization header
-- when BASE64CREDS is given.  done() prints one BENCHJSON line.

function init(args)
   wrk.path = args[1]
   wrk.headers["Host"] = args[2]
   if args[3] ~= nil and args[3] ~= "" then
      wrk.headers["Proxy-Authorization"] = "Basic " .. args[3]
   end
   wrk.headers["User-Agent"] = "squeak-bench/wrk"
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCHJSON {"requests":%d,"bytes":%d,"duration_us":%d,' ..
      '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
      '"lat_p50_us":%d,"lat_p99_us":%d}\n',
      summary.requests, summary.bytes, summary.duration,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(99)))
end
