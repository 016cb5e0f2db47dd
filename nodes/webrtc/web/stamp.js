// Reads the frame stamp (frame counter + capture time drawn into the picture by flowgraph.nodes.synth.stamp)
// back from a displayed video frame. Returns {frame_id, t_capture_ms} or null when the frame carries none.
export function readStamp(video, ctx, canvas, width, height) {
  return null;
}
