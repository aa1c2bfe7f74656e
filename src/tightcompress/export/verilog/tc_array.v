// tc_array: the ROWS x COLS weight-stationary systolic array with its skew and deskew.
//
// Weights: while `load` is high, the word on w_row/lane_row/shift_row enters the top row and every row
// passes its word one row down, so ROWS load cycles fill the array (the word entering last stays in
// row 0). Activations: a_rows carries one group bus (LANES x A_BITS) per array row, all rows of the same
// input vector in the same cycle; row r is delayed r cycles (the skew), then the bus moves one PE right
// per cycle. Partial sums enter the top at 0 and move one PE down per cycle, so PE (r, c) works on
// vector m in cycle m + r + c after it entered, and the sum of column c leaves the bottom after
// m + ROWS - 1 + c. Column c then waits COLS - 1 - c cycles (the deskew): y_row holds all columns of one
// vector together, with y_valid, one cycle after PE (ROWS-1, COLS-1) computed it.
// A pass of an h x w weight block therefore takes ROWS (load) + M + ROWS + COLS - 2 (stream) cycles for
// M vectors: the cycle model's 2R + C + M - 2 per fold.
//
// Parameters:
//   ROWS, COLS  array size R x C
//   LANES       G, activations on each row's group bus (1 for dense)
//   A_BITS      activation bits (8)
//   W_BITS      weight bits (8, or 4 with SUBWORD)
//   ACC_BITS    partial-sum bits (32)
//   SUBWORD     1: tc_pe_subword PEs (4-bit weights and a shift bit), 0: tc_pe
//   LANE_BITS   lane-index bits: $clog2(LANES), at least 1
module tc_array #(
    parameter ROWS = 8,
    parameter COLS = 8,
    parameter LANES = 8,
    parameter A_BITS = 8,
    parameter W_BITS = 8,
    parameter ACC_BITS = 32,
    parameter SUBWORD = 0,
    parameter LANE_BITS = (LANES > 1) ? $clog2(LANES) : 1
) (
    input  wire                            clk,
    input  wire                            rst,
    input  wire                            load,
    input  wire [COLS*W_BITS-1:0]          w_row,
    input  wire [COLS*LANE_BITS-1:0]       lane_row,
    input  wire [COLS-1:0]                 shift_row,
    input  wire [ROWS*LANES*A_BITS-1:0]    a_rows,
    input  wire                            a_valid,
    output wire [COLS*ACC_BITS-1:0]        y_row,
    output wire                            y_valid
);
    localparam BUS = LANES * A_BITS;

    // Each PE's outputs are wires of its own generate block, row[r].col[c]; its neighbours read them there
    // (left: row[r].col[c-1], above: row[r-1].col[c]).
    genvar r, c;
    generate
        for (r = 0; r < ROWS; r = r + 1) begin : skew
            wire [BUS-1:0] a;
            wire           v;
            tc_delay #(.WIDTH(BUS + 1), .DEPTH(r)) row_delay (
                .clk(clk), .d({a_valid, a_rows[r*BUS +: BUS]}), .q({v, a})
            );
        end
        for (r = 0; r < ROWS; r = r + 1) begin : row
            for (c = 0; c < COLS; c = c + 1) begin : col
                wire        [BUS-1:0]       a_in, a_out;
                wire                        v_in, v_out;
                wire signed [ACC_BITS-1:0]  p_in, p_out;
                wire        [W_BITS-1:0]    w_in, w_out;
                wire        [LANE_BITS-1:0] l_in, l_out;
                wire                        s_in, s_out;
                if (c == 0) begin : left_edge
                    assign a_in = skew[r].a;
                    assign v_in = skew[r].v;
                end else begin : from_left
                    assign a_in = row[r].col[c-1].a_out;
                    assign v_in = row[r].col[c-1].v_out;
                end
                if (r == 0) begin : top_edge
                    assign p_in = {ACC_BITS{1'b0}};
                    assign w_in = w_row[c*W_BITS +: W_BITS];
                    assign l_in = lane_row[c*LANE_BITS +: LANE_BITS];
                    assign s_in = shift_row[c];
                end else begin : from_above
                    assign p_in = row[r-1].col[c].p_out;
                    assign w_in = row[r-1].col[c].w_out;
                    assign l_in = row[r-1].col[c].l_out;
                    assign s_in = row[r-1].col[c].s_out;
                end
                if (SUBWORD) begin : pe_subword
                    tc_pe_subword #(
                        .LANES(LANES), .A_BITS(A_BITS), .W_BITS(W_BITS), .ACC_BITS(ACC_BITS),
                        .LANE_BITS(LANE_BITS)
                    ) pe (
                        .clk(clk), .rst(rst), .load(load),
                        .w_in(w_in), .shift_in(s_in), .lane_in(l_in),
                        .w_out(w_out), .shift_out(s_out), .lane_out(l_out),
                        .a_in(a_in), .a_valid_in(v_in), .a_out(a_out), .a_valid_out(v_out),
                        .psum_in(p_in), .psum_out(p_out)
                    );
                end else begin : pe_word
                    tc_pe #(
                        .LANES(LANES), .A_BITS(A_BITS), .W_BITS(W_BITS), .ACC_BITS(ACC_BITS),
                        .LANE_BITS(LANE_BITS)
                    ) pe (
                        .clk(clk), .rst(rst), .load(load),
                        .w_in(w_in), .lane_in(l_in), .w_out(w_out), .lane_out(l_out),
                        .a_in(a_in), .a_valid_in(v_in), .a_out(a_out), .a_valid_out(v_out),
                        .psum_in(p_in), .psum_out(p_out)
                    );
                    assign s_out = 1'b0;
                end
            end
        end
        // Deskew: the bottom of column c (with the valid of the bottom-row PE that produced it) waits
        // COLS-1-c cycles so that all columns of one vector leave together.
        for (c = 0; c < COLS; c = c + 1) begin : deskew
            wire valid;
            tc_delay #(.WIDTH(ACC_BITS + 1), .DEPTH(COLS - 1 - c)) col_delay (
                .clk(clk),
                .d({row[ROWS-1].col[c].v_out, row[ROWS-1].col[c].p_out}),
                .q({valid, y_row[c*ACC_BITS +: ACC_BITS]})
            );
        end
    endgenerate
    assign y_valid = deskew[COLS-1].valid;
endmodule
