// The pack's pure geometry and prompt text, shared by the widgets and kept free of imports so the tests
// can run it outside the browser (tests/test_web_geometry.py compares it with the Python engine).

// Where a width x height picture goes when fitted inside a box (letterboxed): scale and offsets.
export function fit(width, height, boxWidth, boxHeight) {
  const scale = Math.min(boxWidth / width, boxHeight / height);
  return { scale, left: (boxWidth - width * scale) / 2, top: (boxHeight - height * scale) / 2 };
}

// Mirrors comfy_harmovid.composite.ANCHORS: the anchor point as fractions of the width and height.
const ANCHORS = {
  "top-left": [0, 0], "top-center": [0.5, 0], "top-right": [1, 0],
  "center-left": [0, 0.5], "center": [0.5, 0.5], "center-right": [1, 0.5],
  "bottom-left": [0, 1], "bottom-center": [0.5, 1], "bottom-right": [1, 1],
};

// Where the foreground lands on the background, in background pixels (as composite.Placement computes it).
export function placement(foreground, background, { scale, x, y, anchor }) {
  const fitScale = Math.min(background.height / foreground.height, background.width / foreground.width);
  const height = Math.max(1, Math.round(foreground.height * fitScale * scale));
  const width = Math.max(1, Math.round(foreground.width * fitScale * scale));
  const [ax, ay] = ANCHORS[anchor] ?? ANCHORS["bottom-center"];
  return { left: Math.round(ax * (background.width - width) + x * background.width),
           top: Math.round(ay * (background.height - height) + y * background.height), width, height };
}

// Prompt text as the SAM2 Mask widgets hold it, read as comfy_harmovid.segment.prompts reads it:
// "x,y; x,y" (or the JSON list of point-editor nodes) and "x1,y1,x2,y2", pixels of the prompt frame.
export function parsePoints(text) {
  text = (text ?? "").trim();
  if (!text) return [];
  if (text.startsWith("[")) return JSON.parse(text).map((p) => [Number(p.x), Number(p.y)]);
  return text.split(/[;\n]+/).map((part) => part.trim()).filter(Boolean).map((part) => {
    const numbers = part.split(/[,\s]+/).filter(Boolean).map(Number);
    if (numbers.length !== 2 || numbers.some((n) => !Number.isFinite(n))) throw new Error(`'${part}' is not x,y`);
    return numbers;
  });
}

export function parseBox(text) {
  text = (text ?? "").trim();
  if (!text) return null;
  const numbers = text.replace(/^[[(]|[\])]$/g, "").split(/[,;\s]+/).filter(Boolean).map(Number);
  if (numbers.length !== 4 || numbers.some((n) => !Number.isFinite(n))) throw new Error(`'${text}' is not x1,y1,x2,y2`);
  return numbers;
}

export const formatPoints = (points) => points.map(([x, y]) => `${Math.round(x)},${Math.round(y)}`).join("; ");

