#version 450
// Flat cells: the colour heatmap_cells.vert computed for the cell.
layout(location = 0) flat in vec4 cell_color;
layout(location = 0) out vec4 color;

void main() {
  color = cell_color;
}
