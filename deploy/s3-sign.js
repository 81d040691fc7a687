// nginx fetching media from the bucket itself (VIDEOFLIX_STORAGE=s3://<bucket>/<prefix>,
// README "Object storage: serving"): the bucket is private, so each GET nginx sends it is
// signed with AWS Signature Version 4, as Videoflix's own client (botocore) signs, with
// the app's credentials given to nginx as template variables (deploy/nginx.conf). Only
// GETs without a body: the payload hash is that of the empty string. The request's
// Range (the slice module's) is not signed, so one signature serves every slice.
// The same way nginxinc's nginx-s3-gateway signs (njs, HMAC-SHA256 chain).
const crypto = require('crypto');

const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const SIGNED_HEADERS = 'host;x-amz-content-sha256;x-amz-date';

// s3://bucket/prefix -> ["bucket", "prefix/"] (the same rule as platform/storage.py).
function location(r) {
    const m = /^s3:\/\/([a-z0-9.-]{3,63})(?:\/(.*?))?\/*$/.exec(r.variables.videoflix_storage || '');
    if (!m) return null;
    return [m[1], m[2] ? m[2] + '/' : ''];
}

// The object's path on the endpoint (path-style addressing): /<bucket>/<prefix><id>/v<N>/<file>.
function objectPath(r) {
    const where = location(r);
    if (!where) return '/';
    const v = r.variables;
    return '/' + where[0] + '/' + where[1] + v.vf_id + '/' + v.vf_version + '/' + v.vf_file;
}

// The endpoint's host[:port], as the Host header names it (signed).
function host(r) {
    const m = /^https?:\/\/([^/]+)/.exec(r.variables.videoflix_s3_endpoint || '');
    return m ? m[1] : '';
}

// x-amz-date: 20261207T175000Z (one value per request: the Authorization below reads it).
function amzDate(r) {
    return new Date().toISOString().replace(/[-:]/g, '').replace(/\.[0-9]{3}/, '');
}

function hmac(key, text) {
    return crypto.createHmac('sha256', key).update(text).digest();
}

function authorization(r) {
    const v = r.variables;
    const date = v.videoflix_s3_date;
    const day = date.slice(0, 8);
    const region = v.videoflix_s3_region || 'us-east-1';
    const scope = day + '/' + region + '/s3/aws4_request';
    const canonical = ['GET', objectPath(r), '',
        'host:' + host(r), 'x-amz-content-sha256:' + EMPTY_SHA256, 'x-amz-date:' + date, '',
        SIGNED_HEADERS, EMPTY_SHA256].join('\n');
    const toSign = ['AWS4-HMAC-SHA256', date, scope,
        crypto.createHash('sha256').update(canonical).digest('hex')].join('\n');
    let key = hmac('AWS4' + v.videoflix_s3_secret_key, day);
    key = hmac(key, region);
    key = hmac(key, 's3');
    key = hmac(key, 'aws4_request');
    const signature = crypto.createHmac('sha256', key).update(toSign).digest('hex');
    return 'AWS4-HMAC-SHA256 Credential=' + v.videoflix_s3_access_key + '/' + scope
        + ', SignedHeaders=' + SIGNED_HEADERS + ', Signature=' + signature;
}

export default { objectPath, host, amzDate, authorization, EMPTY_SHA256 };
