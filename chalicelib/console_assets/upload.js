// Upload a File to S3 with a presigned POST ({url, fields} from POST /uploads), calling
// onProgress(loaded, total) as the bytes go. Resolves when S3 has stored the file;
// rejects with an Error whose `code` is S3's error code (or "network_error").
// Get the presigned POST from your own backend: an API key never belongs in browser code.
export function uploadWithProgress(file, presignedPost, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const [name, value] of Object.entries(presignedPost.fields)) {
      form.append(name, value);
    }
    form.append("file", file); // last: S3 ignores every field after the file
    const request = new XMLHttpRequest();
    request.open("POST", presignedPost.url);
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded, event.total);
    });
    request.addEventListener("load", () => {
      if (request.status >= 200 && request.status < 300) {
        resolve();
        return;
      }
      const code = request.responseXML?.querySelector("Error > Code")?.textContent;
      const error = new Error(`S3 refused the upload (HTTP ${request.status})`);
      error.code = code || `http_${request.status}`;
      reject(error);
    });
    request.addEventListener("error", () => {
      const error = new Error("The upload did not reach S3 (network or CORS).");
      error.code = "network_error";
      reject(error);
    });
    request.send(form);
  });
}
