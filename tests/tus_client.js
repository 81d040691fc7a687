// The official tus-js-client (npm, package-lock.json) uploading one file to Videoflix,
// run by tests/test_resumable_clients.py under Node. One JSON line out:
//   {"ok": true, "url": <upload URL>, "videoLocation": <Video-Location>, "resumedFrom": <offset>}
// or {"ok": false, "error": "..."}.
//
// Arguments: a JSON object
//   endpoint, file, protocol ("tus-v1" | "ietf-draft-03" | "ietf-draft-05"), token (Bearer),
//   chunkSize, metadata, uploadDataDuringCreation,
//   stopAfter: abort the first upload once this many bytes are acknowledged, then resume it
//              with a new Upload from its URL (a page reload: a new client, the old URL),
//   waitFile: after stopAfter, wait for this file to appear before resuming (the test restarts
//             the server meanwhile),
//   uploadUrl: resume this upload (made elsewhere) instead of creating one,
//   retryDelays.
'use strict';

const fs = require('fs');
const tus = require('tus-js-client');

const options = JSON.parse(process.argv[2]);

function print(result) {
  process.stdout.write(JSON.stringify(result) + '\n');
}

function waitForFile(path) {
  return new Promise((resolve) => {
    const timer = setInterval(() => {
      if (fs.existsSync(path)) {
        clearInterval(timer);
        resolve();
      }
    }, 50);
  });
}

function upload(extra) {
  return new Promise((resolve, reject) => {
    let videoLocation = null;
    let resumedFrom = null;
    const data = fs.readFileSync(options.file);
    const task = new tus.Upload(data, {
      endpoint: options.endpoint,
      protocol: options.protocol,
      chunkSize: options.chunkSize,
      uploadDataDuringCreation: Boolean(options.uploadDataDuringCreation),
      metadata: options.metadata,
      headers: { Authorization: `Bearer ${options.token}` },
      retryDelays: options.retryDelays || [0, 500, 1000, 2000, 4000, 8000],
      storeFingerprintForResuming: false,
      onAfterResponse(req, res) {
        const method = req.getMethod();
        if (method === 'HEAD' && resumedFrom === null) {
          resumedFrom = Number(res.getHeader('Upload-Offset'));
        }
        const location = res.getHeader('Video-Location');
        if (location) videoLocation = location;
      },
      onChunkComplete(chunkSize, accepted) {
        if (extra.stopAfter && accepted >= extra.stopAfter) {
          task.abort().then(() => resolve({ stopped: true, url: task.url, accepted }));
        }
      },
      onSuccess() {
        resolve({ stopped: false, url: task.url, videoLocation, resumedFrom });
      },
      onError(error) {
        reject(error);
      },
      ...extra.options,
    });
    task.start();
  });
}

(async () => {
  try {
    const first = options.uploadUrl ? { uploadUrl: options.uploadUrl } : {};
    let result = await upload({ stopAfter: options.stopAfter, options: first });
    if (result.stopped) {
      if (options.waitFile) {
        print({ ok: true, stoppedAt: result.accepted, url: result.url });
        await waitForFile(options.waitFile);
      }
      result = await upload({ options: { uploadUrl: result.url } });
    }
    print({ ok: true, url: result.url, videoLocation: result.videoLocation, resumedFrom: result.resumedFrom });
  } catch (error) {
    print({ ok: false, error: String(error && error.message ? error.message : error) });
    process.exitCode = 1;
  }
})();
