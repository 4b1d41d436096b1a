/* The selfie camera of the replacement wizard: getUserMedia, one frame to JPEG, put into the form's file
   input so the form posts it like a chosen file. Without a camera or this script, the file input (with
   capture="user") does the same. */
(function () {
  "use strict";
  var box = document.querySelector("[data-camera]");
  if (!box || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || typeof DataTransfer === "undefined") {
    return;
  }
  var input = document.getElementById(box.getAttribute("data-camera"));
  var video = box.querySelector("video");
  var preview = box.querySelector("img");
  var start = box.querySelector("[data-camera-start]");
  var shoot = box.querySelector("[data-camera-shoot]");
  var status = box.querySelector("[data-camera-status]");
  var stream = null;
  box.hidden = false;

  function stop() {
    if (stream) {
      stream.getTracks().forEach(function (track) { track.stop(); });
      stream = null;
    }
    video.hidden = true;
    shoot.hidden = true;
  }

  start.addEventListener("click", function () {
    navigator.mediaDevices.getUserMedia({ video: { facingMode: "user" }, audio: false }).then(function (s) {
      stream = s;
      video.srcObject = s;
      video.hidden = false;
      shoot.hidden = false;
      preview.hidden = true;
      status.textContent = "";
      return video.play();
    }).catch(function () {
      stop();
      status.textContent = box.getAttribute("data-msg-denied");
    });
  });

  shoot.addEventListener("click", function () {
    if (!stream || !video.videoWidth) { return; }
    var canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    canvas.toBlob(function (blob) {
      if (!blob) { return; }
      var files = new DataTransfer();
      files.items.add(new File([blob], "selfie.jpg", { type: "image/jpeg" }));
      input.files = files.files;
      preview.src = URL.createObjectURL(blob);
      preview.hidden = false;
      status.textContent = box.getAttribute("data-msg-taken");
      stop();
    }, "image/jpeg", 0.92);
  });
})();
