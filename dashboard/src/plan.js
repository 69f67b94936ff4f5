// The plan of the zones: their GeoJSON outlines drawn as SVG in Web Mercator, coloured by
// level of service. No map is needed; when the config names a tile server, its tiles are
// laid underneath, in the same projection.

const SVG = 'http://www.w3.org/2000/svg';
const TILE_PX = 256;
const TARGET_PX = 900;

/** Longitude/latitude to Web Mercator world units (0..1). */
function mercator([lon, lat]) {
  const phi = (Math.max(-85.05, Math.min(85.05, lat)) * Math.PI) / 180;
  return [(lon + 180) / 360, (1 - Math.log(Math.tan(phi) + 1 / Math.cos(phi)) / Math.PI) / 2];
}

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.append(node);
  return node;
}

/** The outer ring of a zone's polygon, if it has a usable one. */
function ring(zone) {
  const coords = zone.polygon?.coordinates?.[0];
  return Array.isArray(coords) && coords.length >= 3 ? coords.map(mercator) : null;
}

/**
 * Draws the zones of `plan` into `svg`. Returns the zone ids drawn (none when no zone has an
 * outline). `onPick(id)` is called when a zone is clicked.
 */
export function drawPlan(svg, plan, onPick) {
  svg.replaceChildren();
  const shapes = plan.zones.map((z) => [z, ring(z)]).filter(([, r]) => r);
  if (shapes.length === 0) return [];
  const points = shapes.flatMap(([, r]) => r);
  let [minX, minY] = [Math.min(...points.map((p) => p[0])), Math.min(...points.map((p) => p[1]))];
  let [maxX, maxY] = [Math.max(...points.map((p) => p[0])), Math.max(...points.map((p) => p[1]))];
  const pad = Math.max(maxX - minX, maxY - minY) * 0.08 || 1e-6;
  [minX, minY, maxX, maxY] = [minX - pad, minY - pad, maxX + pad, maxY + pad];
  const zoom = Math.max(0, Math.min(19, Math.floor(Math.log2(TARGET_PX / ((maxX - minX) * TILE_PX)))));
  const scale = TILE_PX * 2 ** zoom;
  const [ox, oy] = [minX * scale, minY * scale];
  const [w, h] = [(maxX - minX) * scale, (maxY - minY) * scale];
  svg.setAttribute('viewBox', `0 0 ${w.toFixed(1)} ${h.toFixed(1)}`);
  if (plan.tiles) drawTiles(svg, plan.tiles.url, zoom, minX, minY, maxX, maxY, ox, oy);
  const font = Math.max(w, h) / 42;
  // Zones a few metres across on a plan a kilometre wide would be specks: each is drawn at
  // least this big (a marker in its colour under the true outline), so its level still shows.
  const minRadius = font * 0.9;
  const markers = el('g', { class: 'markers' });
  svg.append(markers);
  const labels = el('g', { class: 'labels' });
  const placed = [];
  for (const [zone, r] of shapes) {
    const xy = r.map(([x, y]) => [x * scale - ox, y * scale - oy]);
    const d = `M${xy.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join('L')}Z`;
    const [cx, cy] = [xy.reduce((s, p) => s + p[0], 0) / xy.length, xy.reduce((s, p) => s + p[1], 0) / xy.length];
    const radius = Math.max(...xy.map(([x, y]) => Math.hypot(x - cx, y - cy)));
    if (radius < minRadius) {
      const marker = el('circle', { cx: cx.toFixed(1), cy: cy.toFixed(1), r: minRadius.toFixed(1), class: 'zone-shape zone-marker', 'data-zone': zone.id }, markers);
      marker.addEventListener('click', () => onPick(zone.id));
    }
    const path = el('path', { d, class: 'zone-shape', 'data-zone': zone.id }, svg);
    el('title', {}, path).textContent = zone.name;
    path.addEventListener('click', () => onPick(zone.id));
    const [lx, ly] = labelSpot(zone.name, cx, cy, Math.max(radius, minRadius), radius >= minRadius * 2, font, placed);
    const text = el('text', { x: lx.toFixed(1), y: ly.toFixed(1), 'font-size': font.toFixed(1), 'data-zone': zone.id }, labels);
    el('tspan', { x: lx.toFixed(1), dy: '-0.2em', class: 'plan-name' }, text).textContent = zone.name;
    el('tspan', { x: lx.toFixed(1), dy: '1.1em', class: 'plan-count' }, text).textContent = '–';
  }
  svg.append(labels);
  return shapes.map(([z]) => z.id);
}

/**
 * Where a zone's two-line label goes: on a zone big enough to hold it, in its middle;
 * otherwise beside it (below, above, right, left), at the first spot that overlaps no label
 * placed before (`placed`, boxes estimated from the text length), which it joins.
 */
function labelSpot(name, cx, cy, radius, inside, font, placed) {
  // The count line is up to 12 characters ("12,317 addr.").
  const [bw, bh] = [Math.max(name.length, 12) * font * 0.6, font * 2.3];
  const gap = radius + font * 0.3;
  const spots = [
    ...(inside ? [[cx, cy]] : []),
    [cx, cy + gap + bh / 2],
    [cx, cy - gap - bh / 2],
    [cx + gap + bw / 2, cy],
    [cx - gap - bw / 2, cy],
  ];
  const box = ([x, y]) => [x - bw / 2, y - bh / 2, x + bw / 2, y + bh / 2];
  const clear = (b) => placed.every((o) => b[2] <= o[0] || o[2] <= b[0] || b[3] <= o[1] || o[3] <= b[1]);
  const spot = spots.find((s) => clear(box(s))) ?? spots[0];
  placed.push(box(spot));
  return spot;
}

function drawTiles(svg, template, zoom, minX, minY, maxX, maxY, ox, oy) {
  const n = 2 ** zoom;
  const g = el('g', { class: 'tiles' }, svg);
  for (let tx = Math.floor(minX * n); tx <= Math.floor(maxX * n); tx += 1) {
    for (let ty = Math.floor(minY * n); ty <= Math.floor(maxY * n); ty += 1) {
      const href = template.replace('{z}', zoom).replace('{x}', tx).replace('{y}', ty);
      el('image', { href, x: tx * TILE_PX - ox, y: ty * TILE_PX - oy, width: TILE_PX, height: TILE_PX }, g);
    }
  }
}

/** Colours zone `id` and writes its headline number. */
export function paintZone(svg, id, colour, label, stale) {
  for (const node of svg.querySelectorAll(`[data-zone="${CSS.escape(id)}"]`)) {
    if (node.classList.contains('zone-shape')) {
      node.style.fill = colour;
      node.classList.toggle('stale', stale);
    } else {
      node.querySelector('.plan-count').textContent = label;
    }
  }
}
