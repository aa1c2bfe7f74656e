// tc_feeder: puts each array row's group of permuted inputs on that row's bus.
//
// A tile reads its inputs in its own order (the tile's feeder file: the input feature at each permuted
// position), cut into groups; every physical row of group g multiplexes among the same G inputs. The
// feeder holds, per array row, the input feature of each of its LANES lanes and whether the lane is in
// use (a group shorter than G, e.g. the last one when K is not a multiple of G, leaves lanes unused and
// drives them with 0). These row registers shift down one row per cycle while `load` is high, in step
// with the array's weights. Each stream cycle it gathers, for the input vector x_vec in flight, every
// row's lanes:  a_rows[r][j] = lane_on[r][j] ? x_vec[feature[r][j]] : 0.
//
// Parameters:
//   ROWS       array rows R
//   LANES      G, lanes per row bus
//   A_BITS     activation bits (8)
//   FEATURES   input features of one vector (K of the layer)
//   FEAT_BITS  bits of a feature index: $clog2(FEATURES), at least 1
module tc_feeder #(
    parameter ROWS = 8,
    parameter LANES = 8,
    parameter A_BITS = 8,
    parameter FEATURES = 64,
    parameter FEAT_BITS = (FEATURES > 1) ? $clog2(FEATURES) : 1
) (
    input  wire                         clk,
    input  wire                         load,
    input  wire [LANES*FEAT_BITS-1:0]   feature_in,
    input  wire [LANES-1:0]             lane_on_in,
    input  wire [FEATURES*A_BITS-1:0]   x_vec,
    input  wire                         x_valid,
    output wire [ROWS*LANES*A_BITS-1:0] a_rows,
    output wire                         a_valid
);
    genvar r, j;
    generate
        for (r = 0; r < ROWS; r = r + 1) begin : row
            reg [LANES*FEAT_BITS-1:0] feature;  // input feature of each lane
            reg [LANES-1:0]           lane_on;  // lane in use
            if (r == 0) begin : top
                always @(posedge clk)
                    if (load) begin
                        feature <= feature_in;
                        lane_on <= lane_on_in;
                    end
            end else begin : below
                always @(posedge clk)
                    if (load) begin
                        feature <= row[r-1].feature;
                        lane_on <= row[r-1].lane_on;
                    end
            end
            for (j = 0; j < LANES; j = j + 1) begin : lane
                wire [FEAT_BITS-1:0] f = feature[j*FEAT_BITS +: FEAT_BITS];
                assign a_rows[(r*LANES+j)*A_BITS +: A_BITS] =
                    lane_on[j] ? x_vec[f*A_BITS +: A_BITS] : {A_BITS{1'b0}};
            end
        end
    endgenerate
    assign a_valid = x_valid;
endmodule
